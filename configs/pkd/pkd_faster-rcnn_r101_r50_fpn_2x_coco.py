# PKD on COCO, MMRazor's setting (configs/distill/mmdet/pkd/
# pkd_fpn_faster-rcnn_r101_faster-rcnn_r50_2x_coco.py): Faster R-CNN R-101 FPN 2x teacher (box AP
# 39.8) -> Faster R-CNN R-50 FPN 2x student (38.4), FPN levels 0-3, weight 6. MMRazor reports
# 40.3 (README there).
_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_2x_coco.py'
custom_imports = dict(imports=['mmkd'], allow_failed_imports=False)

levels = ['neck[0]', 'neck[1]', 'neck[2]', 'neck[3]']
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
        fpn=dict(student=levels, teacher=levels, method=dict(type='PKD'), loss_weight=6.0)))
