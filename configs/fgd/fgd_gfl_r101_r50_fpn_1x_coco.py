# FGD on COCO, the authors' GFL pair (yzd-v/FGD configs/distillers/fgd/
# fgd_gfl_r101_distill_gfl_r50_fpn_1x_coco.py): GFL R-101 FPN multi-scale 2x teacher (box AP
# 44.7) -> GFL R-50 FPN 1x student (40.2), all 5 FPN levels, T 0.5, alpha 1e-3, beta 5e-4,
# gamma 5e-4, lambda 5e-6 (preset 'retinanet'); the student's neck and head start from the
# teacher's (init_student=True); SGD lr 0.01, gradient clipping 35. Published: 43.5 (the
# authors' README).
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
    init_student_from=dict(teacher='teacher', prefixes=['neck', 'bbox_head']),
    blocks=dict(
        fpn=dict(student='neck', teacher='neck',
                 method=dict(type='FGD', preset='retinanet'), loss_weight=1.0)))
optim_wrapper = dict(optimizer=dict(lr=0.01), clip_grad=dict(max_norm=35, norm_type=2))
