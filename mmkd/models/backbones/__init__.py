from .cifar_resnet import CifarResNet
from .cifar_wide_resnet import CifarWideResNet
from .stem_token_vit import ConvPatchStem, LinearPatchStem, StemTokenViT

__all__ = ['CifarResNet', 'CifarWideResNet', 'ConvPatchStem', 'LinearPatchStem', 'StemTokenViT']
