# PKD on COCO, MMRazor's setting (configs/distill/mmdet/pkd/
# pkd_fpn_retina_x101_retina_r50_2x_coco.py): RetinaNet X-101-64x4d FPN 1x teacher (box AP
# 41.0) -> RetinaNet R-50 FPN 2x student (37.4), FPN levels 0-3, weight 10, SGD lr 0.01. MMRazor
# reports 40.8 (README there).
_base_ = 'mmdet::retinanet/retinanet_r50_fpn_2x_coco.py'
custom_imports = dict(imports=['mmkd'], allow_failed_imports=False)

levels = ['neck[0]', 'neck[1]', 'neck[2]', 'neck[3]']
model = dict(
    _delete_=True,
    type='mmkd.Distiller',
    student={{_base_.model}},
    teacher=dict(
        config='mmdet::retinanet/retinanet_x101-64x4d_fpn_1x_coco.py',
        checkpoint='https://download.openmmlab.com/mmdetection/v2.0/retinanet/'
                   'retinanet_x101_64x4d_fpn_1x_coco/'
                   'retinanet_x101_64x4d_fpn_1x_coco_20200130-366f5af1.pth'),
    blocks=dict(
        fpn=dict(student=levels, teacher=levels, method=dict(type='PKD'), loss_weight=10.0)))
optim_wrapper = dict(optimizer=dict(lr=0.01))
