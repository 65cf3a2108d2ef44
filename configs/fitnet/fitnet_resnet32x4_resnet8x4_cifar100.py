# FitNet on CIFAR-100 as the KD literature runs it, resnet32x4 -> resnet8x4: the second stage's
# output as the hint (mdistiller HINT_LAYER 2), regressed by conv + BN + ReLU (ConvReg), MSE weight
# 100, CE weight 1, no logit KD (mdistiller configs/cifar100/fitnet.yaml); 240 epochs, SGD lr 0.05,
# batch 64 (configs/cifar100/README.md).
#   python tools/train.py configs/cifar100/resnet32x4_cifar100.py    # the teacher, first
_base_ = '../cifar100/_distill_resnet32x4_resnet8x4.py'

model = dict(blocks=dict(
    hint=dict(student='backbone.layer2', teacher='backbone.layer2',
              method=dict(type='FeatureMSE', projector='convreg'), loss_weight=100.0)))
