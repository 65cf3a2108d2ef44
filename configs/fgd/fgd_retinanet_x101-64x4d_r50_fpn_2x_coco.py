# FGD on COCO, the authors' main RetinaNet pair (yzd-v/FGD configs/distillers/fgd/
# fgd_retina_rx101_64x4d_distill_retina_r50_fpn_2x_coco.py): RetinaNet X-101-64x4d FPN 1x teacher
# (box AP 41.0) -> RetinaNet R-50 FPN 2x student (37.4), all 5 FPN levels (their
# neck.fpn_convs.{0..4}.conv, the neck's outputs here), T 0.5, alpha 1e-3, beta 5e-4,
# gamma 5e-4, lambda 5e-6 (preset 'retinanet'); the student's neck and head start from the
# teacher's (their init_student=True); SGD lr 0.01, gradient clipping 35. Published: 40.7.
_base_ = 'mmdet::retinanet/retinanet_r50_fpn_2x_coco.py'
custom_imports = dict(imports=['mmkd'], allow_failed_imports=False)

model = dict(
    _delete_=True,
    type='mmkd.Distiller',
    student={{_base_.model}},
    teacher=dict(
        config='mmdet::retinanet/retinanet_x101-64x4d_fpn_1x_coco.py',
        checkpoint='https://download.openmmlab.com/mmdetection/v2.0/retinanet/'
                   'retinanet_x101_64x4d_fpn_1x_coco/'
                   'retinanet_x101_64x4d_fpn_1x_coco_20200130-366f5af1.pth'),
    init_student_from=dict(teacher='teacher', prefixes=['neck', 'bbox_head']),
    blocks=dict(
        fpn=dict(student='neck', teacher='neck',
                 method=dict(type='FGD', preset='retinanet'), loss_weight=1.0)))
optim_wrapper = dict(optimizer=dict(lr=0.01), clip_grad=dict(max_norm=35, norm_type=2))
