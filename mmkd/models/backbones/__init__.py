from .cifar_resnet import CifarResNet
from .cifar_wide_resnet import CifarWideResNet

__all__ = ['CifarResNet', 'CifarWideResNet']
