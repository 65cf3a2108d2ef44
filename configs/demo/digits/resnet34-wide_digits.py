# Teacher on the digits demo data: CIFAR ResNet-34 at half width.
_base_ = './resnet18-tiny_digits.py'
model = dict(
    backbone=dict(depth=34, stem_channels=32, base_channels=32),
    head=dict(in_channels=256))
