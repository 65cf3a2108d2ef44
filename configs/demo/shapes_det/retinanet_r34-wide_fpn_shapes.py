# Teacher on the shapes data: RetinaNet R-34 FPN at half width.
_base_ = './retinanet_r18-tiny_fpn_shapes.py'
model = dict(
    backbone=dict(depth=34, base_channels=32, stem_channels=32),
    neck=dict(in_channels=[32, 64, 128, 256], out_channels=128),
    bbox_head=dict(in_channels=128, feat_channels=128))
