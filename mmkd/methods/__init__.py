from .attention_kd import AFD, AT, RTK, spatial_attention_map
from .base import BaseDistillMethod, LevelwiseMethod
from .channel_kd import CWD, PKD, channel_standardize
from .diffkd import (DDIMSampler, DiffKD, DiffKDDenoiser, DiffKDLevel, DiffKDNoiseAdapter,
                     LinearAutoEncoder)
from .dist import DIST
from .dkd import DKD, RLD, decoupled_kl
from .ensemble_kd import EnsembleKD
from .feature_mse import ConvReg, FeatureMSE
from .ld import LD
from .letkd import CosineConv2d, KDLayer, LetKD, LetKDSubclass
from .logit_kd import LogitKD
from .mgd import MGD, MGDGenerator, mgd_mask
from .pkt import PKT
from .quality_kd import QualityKD
from .rkd import RKD
from .sp import SP
from .vkd import OrthogonalProjector, VkD

__all__ = ['BaseDistillMethod', 'LevelwiseMethod', 'FeatureMSE', 'LogitKD', 'DIST', 'DiffKD',
           'DiffKDLevel', 'DiffKDDenoiser', 'DiffKDNoiseAdapter', 'LinearAutoEncoder',
           'DDIMSampler', 'EnsembleKD', 'VkD', 'OrthogonalProjector', 'AFD', 'RTK',
           'spatial_attention_map', 'MGD', 'MGDGenerator', 'mgd_mask', 'QualityKD',
           'CosineConv2d', 'KDLayer', 'LetKD', 'LetKDSubclass', 'DKD', 'RLD', 'decoupled_kl',
           'CWD', 'PKD', 'channel_standardize', 'AT', 'ConvReg', 'LD', 'RKD', 'SP', 'PKT']
