# BYOT (Zhang et al., ICCV 2019) on CIFAR-100, ResNet-50 self-distilled: the ResNet-18 config's
# exits and blocks (./byot_resnet18_cifar100.py), with the student made the ResNet-50 baseline
# (./resnet50_cifar100.py: mmpretrain's CIFAR ResNet at depth 50, its head on 2048 channels).
# Each exit (mmkd.AuxExit) infers layer4's 2048 channels and 4x4 map itself. The exits are
# training-only branches:
#   python tools/model_converters/extract_student.py \
#       work_dirs/byot_resnet50_cifar100/epoch_200.pth s.pth
#   python tools/test.py configs/byot/resnet50_cifar100.py s.pth       # the plain ResNet-50
_base_ = './byot_resnet18_cifar100.py'

model = dict(student=dict(backbone=dict(depth=50), head=dict(in_channels=2048)))
