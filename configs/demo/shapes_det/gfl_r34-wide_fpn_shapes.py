# Teacher for LD on the shapes data: the GFL student baseline at the RetinaNet teacher's size
# (./retinanet_r34-wide_fpn_shapes.py): R-34 FPN at half width, 400 iterations.
_base_ = './gfl_r18-tiny_fpn_shapes.py'
model = dict(
    backbone=dict(depth=34, base_channels=32, stem_channels=32),
    neck=dict(in_channels=[32, 64, 128, 256], out_channels=128),
    bbox_head=dict(in_channels=128, feat_channels=128,
                   norm_cfg=dict(type='GN', num_groups=32, requires_grad=True)))

max_iters = 400
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=30),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=0, end=max_iters, T_max=max_iters,
         eta_min=2e-5),
]
default_hooks = dict(checkpoint=dict(interval=max_iters))
