"""Models the KD literature uses that the OpenMMLab packages lack (registered in mmpretrain)."""
from .backbones import CifarResNet, CifarWideResNet

__all__ = ['CifarResNet', 'CifarWideResNet']
