# wrn-16-2 on CIFAR-100 (0.70 M parameters), the KD literature's architecture and recipe.
_base_ = './_base_cifar100_240e.py'

model = dict(
    type='ImageClassifier',
    backbone=dict(type='CifarWideResNet', depth=16, widen_factor=2),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes=100, in_channels=128,
              loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))
