# Feature imitation (FitNet-style MSE) on all FPN levels, COCO 2x:
# RetinaNet R-101 FPN teacher (box AP 38.9) -> RetinaNet R-50 FPN student (box AP 37.4).
# Both necks output 256 channels, so the auto-sized projector is a 1x1 conv 256 -> 256.
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
                 method=dict(type='FeatureMSE', projector='always'), loss_weight=1.0)))
