from .base import BaseDistillMethod, LevelwiseMethod
from .feature_mse import FeatureMSE
from .logit_kd import LogitKD

__all__ = ['BaseDistillMethod', 'LevelwiseMethod', 'FeatureMSE', 'LogitKD']
