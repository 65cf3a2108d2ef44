# Student baseline for LD (ld_*.py) on the generated shapes data: the shapes RetinaNet R-18 baseline
# (./retinanet_r18-tiny_fpn_shapes.py: data, backbone, neck, schedule) with mmdet's
# GFL head instead (box sides as distributions over reg_max + 1 bins, ATSS assignment; mmdet
# configs/gfl/gfl_r50_fpn_1x_coco.py), its anchors scaled as the RetinaNet's to the 10-28 px
# shapes: 16 px on P3, 32 on P4, 64 on P5.
_base_ = './retinanet_r18-tiny_fpn_shapes.py'

model = dict(
    type='GFL',
    bbox_head=dict(
        _delete_=True, type='GFLHead', num_classes=3, in_channels=64, feat_channels=64,
        stacked_convs=2, norm_cfg=dict(type='GN', num_groups=16, requires_grad=True),
        anchor_generator=dict(type='AnchorGenerator', ratios=[1.0], octave_base_scale=2,
                              scales_per_octave=1, strides=[8, 16, 32]),
        loss_cls=dict(type='QualityFocalLoss', use_sigmoid=True, beta=2.0, loss_weight=1.0),
        loss_dfl=dict(type='DistributionFocalLoss', loss_weight=0.25),
        reg_max=16,
        loss_bbox=dict(type='GIoULoss', loss_weight=2.0)),
    train_cfg=dict(_delete_=True, assigner=dict(type='ATSSAssigner', topk=9),
                   allowed_border=-1, pos_weight=-1, debug=False),
    test_cfg=dict(_delete_=True, nms_pre=1000, min_bbox_size=0, score_thr=0.05,
                  nms=dict(type='nms', iou_threshold=0.6), max_per_img=20))
