# DiffKD (Huang et al., NeurIPS 2023) on COCO, 2x schedule:
# RetinaNet R-101 FPN teacher (box AP 38.9) -> RetinaNet R-50 FPN student (37.4; paper: 39.7).
# Paper setting: every FPN level, no autoencoder (256 channels), MSE, DiffKD loss weight 5
# (multiplying the distance, diffusion and - unused here - autoencoder terms).
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
                 method=dict(type='DiffKD', distance='mse', use_ae=False), loss_weight=5.0)))
