"""Feature imitation with mean squared error (FitNet hints, Romero et al., 2015)."""
from typing import Dict

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..registry import MODELS
from .base import LevelwiseMethod, resize_like


def make_projector(in_channels: int, out_channels: int, ndim: int) -> nn.Module:
    """1x1 conv for (N, C, H, W) maps, Linear for (N, C) vectors / (N, L, C) tokens."""
    if ndim == 4:
        return nn.Conv2d(in_channels, out_channels, kernel_size=1)
    return nn.Linear(in_channels, out_channels)


@MODELS.register_module()
class FeatureMSE(LevelwiseMethod):
    """MSE between the (projected) student feature and the teacher feature.

    The projector is sized from the recorded tensors: a 1x1 conv for maps (N, C, H, W), a Linear
    for vectors (N, C); tokens (N, L, C) project the last dimension. With ``projector='auto'`` it
    is created only when the channel counts differ. A student map of a different spatial size is
    resized bilinearly to the teacher's.

    Args:
        projector (str): 'auto' (default), 'always' or 'none'.
        loss_name (str): key of the returned loss. Default 'loss_mse'.
        share_levels, level_reduction: see :class:`LevelwiseMethod`.
    """

    def __init__(self, projector: str = 'auto', loss_name: str = 'loss_mse', **kwargs):
        super().__init__(**kwargs)
        if projector not in ('auto', 'always', 'none'):
            raise ValueError(f"projector must be 'auto', 'always' or 'none', got {projector!r}")
        self.projector = projector
        self.loss_name = loss_name

    @staticmethod
    def _channels(x: torch.Tensor) -> int:
        return x.shape[-1] if x.dim() == 3 else x.shape[1]

    def build_level(self, student, teacher):
        c_s, c_t = self._channels(student), self._channels(teacher)
        if self.projector == 'always' or (self.projector == 'auto' and c_s != c_t):
            return make_projector(c_s, c_t, student.dim())
        if c_s != c_t:
            raise ValueError(f"FeatureMSE(projector='none') needs equal channels, got student "
                             f'{c_s} and teacher {c_t}.')
        return None

    def level_loss(self, student, teacher, connector, data_samples=None
                   ) -> Dict[str, torch.Tensor]:
        projected = resize_like(connector(student), teacher)
        return {self.loss_name: F.mse_loss(projected.float(), teacher.float())}
