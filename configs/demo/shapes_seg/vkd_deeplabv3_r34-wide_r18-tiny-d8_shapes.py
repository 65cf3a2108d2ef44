# VkD (dense setting) on the last backbone stage: orthogonal projector 128 -> 256, student and
# teacher standardised per channel over all positions of the batch, smooth L1.
_base_ = './_base_distill.py'

model = dict(
    blocks=dict(
        c5=dict(student='backbone.layer4', teacher='backbone.layer4',
                method=dict(type='VkD', normalize='batch'), loss_weight=1.0)))
