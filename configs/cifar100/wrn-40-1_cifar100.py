# wrn-40-1 on CIFAR-100 (0.57 M parameters), the KD literature's architecture and recipe.
_base_ = './_base_cifar100_240e.py'

model = dict(
    type='ImageClassifier',
    backbone=dict(type='CifarWideResNet', depth=40, widen_factor=1),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes=100, in_channels=64,
              loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))
