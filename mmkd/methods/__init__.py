from .ab import AB
from .attention_kd import AFD, AT, RTK, spatial_attention_map
from .base import BaseDistillMethod, LevelwiseMethod
from .byot import BYOT, masked_feature_l2
from .cc import CC, gaussian_correlation
from .channel_kd import CWD, PKD, channel_standardize
from .crd import CRD
from .crosskd import CrossKD, align_scale
from .data_free_losses import DAFLGeneratorLoss, LogitL1, ZSKTKL
from .diffkd import (DDIMSampler, DiffKD, DiffKDDenoiser, DiffKDLevel, DiffKDNoiseAdapter,
                     LinearAutoEncoder)
from .dist import DIST
from .dkd import DKD, RLD, decoupled_kl
from .ensemble_kd import EnsembleKD
from .fbkd import FBKD
from .fgd import FGD, FGDLevel, fgd_attention, fgd_masks
from .feature_mse import ConvReg, FeatureMSE
from .fsp import FSP, fsp_matrix
from .ft import FT, Paraphraser, Translator, factor_transfer_loss
from .kdsvd import KDSVD
from .ld import LD
from .letkd import CosineConv2d, KDLayer, LetKD, LetKDSubclass
from .logit_kd import LogitKD
from .mgd import MGD, MGDGenerator, mgd_mask
from .mlkd import MLKD
from .nst import NST
from .ofd import OFD
from .pkt import PKT
from .quality_kd import QualityKD
from .reviewkd import ABF, ReviewKD, hcl
from .rkd import RKD
from .sp import SP
from .srrl import SRRL
from .teacher_path import TeacherPath
from .vid import VID
from .vkd import OrthogonalProjector, VkD
from .wsld import WSLD

__all__ = ['BaseDistillMethod', 'LevelwiseMethod', 'FeatureMSE', 'LogitKD', 'DIST', 'DiffKD',
           'DiffKDLevel', 'DiffKDDenoiser', 'DiffKDNoiseAdapter', 'LinearAutoEncoder',
           'DDIMSampler', 'EnsembleKD', 'VkD', 'OrthogonalProjector', 'AFD', 'RTK',
           'spatial_attention_map', 'MGD', 'MGDGenerator', 'mgd_mask', 'QualityKD',
           'CosineConv2d', 'KDLayer', 'LetKD', 'LetKDSubclass', 'DKD', 'RLD', 'decoupled_kl',
           'CWD', 'PKD', 'channel_standardize', 'AT', 'ConvReg', 'LD', 'RKD', 'SP', 'PKT',
           'ReviewKD', 'ABF', 'hcl', 'WSLD', 'SRRL', 'FSP', 'fsp_matrix', 'CC',
           'gaussian_correlation', 'MLKD', 'CRD', 'OFD', 'AB', 'FT', 'Paraphraser', 'Translator',
           'factor_transfer_loss', 'VID', 'NST', 'KDSVD', 'BYOT',
           'masked_feature_l2', 'FBKD', 'FGD', 'FGDLevel', 'fgd_attention', 'fgd_masks',
           'CrossKD', 'align_scale', 'TeacherPath', 'DAFLGeneratorLoss', 'LogitL1', 'ZSKTKL']
