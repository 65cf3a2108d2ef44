# resnet8 on CIFAR-100 (0.08 M parameters): the final student of TAKD's ResNet chain
# (resnet110 -> resnet20 -> resnet8, Mirzadeh et al., AAAI 2020), trained alone (the paper's
# NOKD column) on the repository's CIFAR recipe (../cifar100/README.md). CifarResNet depth 8 =
# one basic block per stage, as the authors' resnet_cifar.py `resnet8`.
_base_ = '../cifar100/resnet20_cifar100.py'

model = dict(backbone=dict(depth=8))
