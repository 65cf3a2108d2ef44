# LD's student on its own: mmdet's GFL R-50 FPN 1x with the R-18 backbone of mmdet's
# configs/ld/ld_r18-gflv1-r101_fpn_1x_coco.py (ImageNet-pretrained, stage 1 frozen). The
# baseline the LD README lists for it: 35.8 box AP (mini-batch 6).
_base_ = 'mmdet::gfl/gfl_r50_fpn_1x_coco.py'
model = dict(
    backbone=dict(depth=18, init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet18')),
    neck=dict(in_channels=[64, 128, 256, 512]))
