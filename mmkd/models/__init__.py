"""Models the KD literature uses that the OpenMMLab packages lack (registered in mmpretrain)."""
from .backbones import (CifarResNet, CifarWideResNet, ConvPatchStem, InvolutionPatchStem,
                        LinearPatchStem, RedNet, StemTokenViT, convert_rednet_checkpoint,
                        convert_vit_checkpoint)
from .aux_exit import AuxExit
from .generators import BaseGenerator, DAFLGenerator, ZSKTGenerator
from .heads import MultiTokenClsHead, QualityRegressionHead

__all__ = ['CifarResNet', 'CifarWideResNet', 'ConvPatchStem', 'InvolutionPatchStem',
           'LinearPatchStem', 'RedNet', 'StemTokenViT', 'MultiTokenClsHead', 'QualityRegressionHead',
           'convert_rednet_checkpoint', 'convert_vit_checkpoint', 'AuxExit',
           'BaseGenerator', 'DAFLGenerator', 'ZSKTGenerator']
