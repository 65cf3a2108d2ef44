# VkD (detection setting) on every FPN level: orthogonal projector 64 -> 128 with per-channel
# scale and bias, student and teacher standardised per channel over all positions of the
# batch, smooth L1, weight 4 (the paper's ViDT setting).
_base_ = './_base_distill.py'

model = dict(
    blocks=dict(
        fpn=dict(student='neck', teacher='neck',
                 method=dict(type='VkD', normalize='batch', affine=True), loss_weight=4.0)))
