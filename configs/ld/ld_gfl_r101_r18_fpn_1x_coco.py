# Localization distillation on COCO, mmdet's own setting
# (configs/ld/ld_r18-gflv1-r101_fpn_1x_coco.py): GFL R-101 FPN ms-2x teacher (44.7 box AP) -> GFL R-18 FPN 1x student (./gfl_r18_fpn_1x_coco.py,
# 35.8), LD at the student's positive locations, T 10, weight 0.25; SGD lr 0.01 as mmdet's
# schedule_1x. mmdet's README: 36.5 box AP. The student stays a plain GFL (mmkd.methods.LD).
_base_ = './gfl_r18_fpn_1x_coco.py'
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
        ld=dict(student=['bbox_head.gfl_cls', 'bbox_head.scales.*'],
                teacher='bbox_head.scales.*',
                method=dict(type='LD', tau=10.0), loss_weight=0.25)))
