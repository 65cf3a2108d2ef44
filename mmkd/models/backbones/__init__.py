from .cifar_resnet import CifarResNet
from .cifar_wide_resnet import CifarWideResNet
from .non_aligned_reference import NonAlignedReferenceBackbone
from .rednet import (Involution, InvolutionBottleneck, RedNet, convert_rednet_checkpoint,
                     rednet_stem)
from .stem_token_vit import (ConvPatchStem, InvolutionPatchStem, LinearPatchStem, StemTokenViT,
                             convert_vit_checkpoint)

__all__ = ['CifarResNet', 'CifarWideResNet', 'ConvPatchStem', 'InvolutionPatchStem',
           'LinearPatchStem', 'StemTokenViT', 'convert_vit_checkpoint', 'Involution',
           'InvolutionBottleneck', 'RedNet', 'convert_rednet_checkpoint', 'rednet_stem',
           'NonAlignedReferenceBackbone']
