# resnet20 on CIFAR-100 (0.28 M parameters), the KD literature's architecture and recipe.
_base_ = './_base_cifar100_240e.py'

model = dict(
    type='ImageClassifier',
    backbone=dict(type='CifarResNet', depth=20),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes=100, in_channels=64,
              loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))
