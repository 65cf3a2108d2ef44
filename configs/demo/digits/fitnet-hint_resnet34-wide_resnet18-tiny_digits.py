# FitNet as the KD literature runs it (mdistiller configs/cifar100/fitnet.yaml): the second
# stage's output as the hint, regressed by conv + BN + ReLU (ConvReg), MSE weight 100, no logit
# KD. (fitnet_*.py is this project's FitNet-style baseline: last stage, 1x1 projector, + KD.)
_base_ = './_base_distill.py'

model = dict(
    blocks=dict(
        hint=dict(student='backbone.layer2', teacher='backbone.layer2',
                  method=dict(type='FeatureMSE', projector='convreg'), loss_weight=100.0)))
