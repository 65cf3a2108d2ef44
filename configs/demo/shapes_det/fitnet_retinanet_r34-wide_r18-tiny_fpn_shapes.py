# Feature MSE on every FPN level (the projector sizes itself: 64 -> 128 channels per level).
_base_ = './_base_distill.py'

model = dict(
    blocks=dict(
        fpn=dict(student='neck', teacher='neck',
                 method=dict(type='FeatureMSE'), loss_weight=1.0)))
