# RTK on COCO, 2x: RetinaNet R-101 FPN teacher (box AP 38.9) -> R-50 FPN student (37.4).
# The four backbone stages of each network are the candidates; each student stage attends over
# the teacher stages and keeps the 2 most representative. RTK reports no detection results;
# the weight is our choice (the attention maps are L2-normalised, so the loss is small).
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
        stages=dict(student='backbone.layer*', teacher='backbone.layer*',
                    method=dict(type='RTK', selection='topk', num_keys=2), loss_weight=200.0)))
