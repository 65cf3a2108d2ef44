# A second digits teacher of another architecture, for the several-teachers demo (the ensemble
# of ./ens_resnet34-wide+wrn-16-2_resnet18-tiny_digits.py): the CIFAR wide ResNet WRN-16-2
# (0.69 M parameters), trained as the ResNet-34 teacher is (same data, schedule and seed).
_base_ = './resnet18-tiny_digits.py'
model = dict(
    backbone=dict(_delete_=True, type='CifarWideResNet', depth=16, widen_factor=2),
    head=dict(in_channels=128))
