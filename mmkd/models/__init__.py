"""Models the KD literature uses that the OpenMMLab packages lack (registered in mmpretrain)."""
from .backbones import (CifarResNet, CifarWideResNet, ConvPatchStem, LinearPatchStem,
                        StemTokenViT)
from .heads import MultiTokenClsHead

__all__ = ['CifarResNet', 'CifarWideResNet', 'ConvPatchStem', 'LinearPatchStem',
           'StemTokenViT', 'MultiTokenClsHead']
