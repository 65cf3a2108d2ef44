from .cifar_resnet import CifarResNet
from .cifar_wide_resnet import CifarWideResNet
from .rednet import Involution, InvolutionBottleneck, RedNet, convert_rednet_checkpoint
from .stem_token_vit import ConvPatchStem, LinearPatchStem, StemTokenViT

__all__ = ['CifarResNet', 'CifarWideResNet', 'ConvPatchStem', 'LinearPatchStem', 'StemTokenViT',
           'Involution', 'InvolutionBottleneck', 'RedNet', 'convert_rednet_checkpoint']
