# resnet32x4 on CIFAR-100 (7.43 M parameters), the KD literature's architecture and recipe.
_base_ = './_base_cifar100_240e.py'

model = dict(
    type='ImageClassifier',
    backbone=dict(type='CifarResNet', depth=32, widths=(32, 64, 128, 256)),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes=100, in_channels=256,
              loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))
