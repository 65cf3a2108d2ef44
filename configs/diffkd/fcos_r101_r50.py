# DiffKD on COCO, 2x schedule with multi-scale training:
# FCOS R-101 (caffe) FPN GN-head teacher (box AP 40.8) -> FCOS R-50 student (38.5; paper:
# 42.4). Every FPN level, no autoencoder, MSE, DiffKD loss weight 5.
_base_ = 'mmdet::fcos/fcos_r50-caffe_fpn_gn-head_ms-640-800-2x_coco.py'
custom_imports = dict(imports=['mmkd'], allow_failed_imports=False)

model = dict(
    _delete_=True,
    type='mmkd.Distiller',
    student={{_base_.model}},
    teacher=dict(
        config='mmdet::fcos/fcos_r101-caffe_fpn_gn-head_ms-640-800-2x_coco.py',
        checkpoint='https://download.openmmlab.com/mmdetection/v2.0/fcos/'
                   'fcos_r101_caffe_fpn_gn-head_mstrain_640-800_2x_coco/'
                   'fcos_r101_caffe_fpn_gn-head_mstrain_640-800_2x_coco-511424d6.pth'),
    blocks=dict(
        fpn=dict(student='neck', teacher='neck',
                 method=dict(type='DiffKD', distance='mse', use_ae=False), loss_weight=5.0)))
