# Channel-wise distillation on COCO, MMRazor's setting (configs/distill/mmdet/cwd/
# cwd_cls_head_gfl_r101_fpn_gfl_r50_fpn_1x_coco.py): GFL R-101 FPN ms-2x teacher (box AP 44.7)
# -> GFL R-50 FPN 1x student (40.2), every FPN level (that config records the neck, in spite of
# its name), tau 1, weight 10, SGD lr 0.01. MMRazor reports 41.9 (README there).
_base_ = 'mmdet::gfl/gfl_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['mmkd'], allow_failed_imports=False)

model = dict(
    _delete_=True,
    type='mmkd.Distiller',
    student={{_base_.model}},
    teacher=dict(
        config='mmdet::gfl/gfl_r101_fpn_ms-2x_coco.py',
        checkpoint='https://download.openmmlab.com/mmdetection/v2.0/gfl/'
                   'gfl_r101_fpn_mstrain_2x_coco/'
                   'gfl_r101_fpn_mstrain_2x_coco_20200629_200126-dd12f847.pth'),
    blocks=dict(
        fpn=dict(student='neck', teacher='neck', method=dict(type='CWD', tau=1.0),
                 loss_weight=10.0)))
optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0001))
