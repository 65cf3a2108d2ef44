# DiffKD on every FPN level (student 64 -> teacher 128 channels through DiffKD's own 1x1
# `trans`), no autoencoder, MSE, loss weight 5 as in the paper's RetinaNet setting.
_base_ = './_base_distill.py'

model = dict(
    blocks=dict(
        fpn=dict(student='neck', teacher='neck',
                 method=dict(type='DiffKD', distance='mse'), loss_weight=5.0)))
