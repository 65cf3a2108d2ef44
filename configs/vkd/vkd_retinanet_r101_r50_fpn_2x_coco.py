# VkD on COCO, 2x: RetinaNet R-101 FPN teacher (box AP 38.9) -> RetinaNet R-50 FPN (37.4).
# Detection setting of the paper: orthogonal projector with per-channel scale and bias, student
# and teacher tokens (every FPN position) standardised per channel over the batch, smooth L1,
# weight 4 (the paper's ViDT weight; it reports no RetinaNet run).
_base_ = 'mmdet::retinanet/retinanet_r50_fpn_2x_coco.py'
custom_imports = dict(imports=['mmkd'], allow_failed_imports=False)

model = dict(
    _delete_=True,
    type='mmkd.Distiller',
    student={{_base_.model}},
    teacher=dict(
        config='mmdet::retinanet/retinanet_r101_fpn_2x_coco.py',
        checkpoint='https://download.openmmlab.com/mmdetection/v2.0/retinanet/'
                   'retinanet_r101_fpn_2x_coco/retinanet_r101_fpn_2x_coco_20200131-5560aee8.pth'),
    blocks=dict(
        fpn=dict(student='neck', teacher='neck',
                 method=dict(type='VkD', normalize='batch', affine=True), loss_weight=4.0)))
