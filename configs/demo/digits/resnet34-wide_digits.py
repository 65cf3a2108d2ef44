# Teacher on the digits demo data (distorted, see the student config): CIFAR ResNet-34 at half
# width (5.3 M parameters).
_base_ = './resnet18-tiny_digits.py'
model = dict(
    backbone=dict(depth=34, stem_channels=32, base_channels=32),
    head=dict(in_channels=256))
