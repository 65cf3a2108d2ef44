# DiffKD on COCO, 2x schedule:
# Faster R-CNN R-101 FPN teacher (box AP 39.8) -> Faster R-CNN R-50 FPN student (38.4; paper:
# 40.6). Every FPN level, no autoencoder, MSE, DiffKD loss weight 5. The paper adds a box
# regression KD term (weight 1) whose form it does not specify; it is not included here.
_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_2x_coco.py'
custom_imports = dict(imports=['mmkd'], allow_failed_imports=False)

model = dict(
    _delete_=True,
    type='mmkd.Distiller',
    student={{_base_.model}},
    teacher=dict(
        config='mmdet::faster_rcnn/faster-rcnn_r101_fpn_2x_coco.py',
        checkpoint='https://download.openmmlab.com/mmdetection/v2.0/faster_rcnn/'
                   'faster_rcnn_r101_fpn_2x_coco/'
                   'faster_rcnn_r101_fpn_2x_coco_bbox_mAP-0.398_20200504_210455-1d2dac9c.pth'),
    blocks=dict(
        fpn=dict(student='neck', teacher='neck',
                 method=dict(type='DiffKD', distance='mse', use_ae=False), loss_weight=5.0)))
