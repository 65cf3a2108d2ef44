"""Feature imitation with mean squared error (FitNet hints, Romero et al., ICLR 2015).

``projector='convreg'`` is FitNet as the KD literature runs it (mdistiller ``FitNet`` with
``_common.ConvReg``; RepDistiller the same): the student's hint map is regressed onto the
teacher's by a conv + BN + ReLU whose conv also fixes the spatial size::

    student H_s == 2 H_t   -> conv 3x3, stride 2, padding 1
    student H_s * 2 == H_t -> transposed conv 4x4, stride 2, padding 1
    student H_s >= H_t     -> conv (1 + H_s - H_t) x (1 + W_s - W_t)   (1x1 at equal sizes)
    loss = MSE(ReLU(BN(conv(f_s))), f_t)

mdistiller's CIFAR setting: the output of the second stage (hint layer 2, ``backbone.layer2``
of the CIFAR ResNets), weight 100, CE weight 1 and no logit KD.
"""
from typing import Dict, Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..registry import MODELS
from ..utils.arguments import LossName
from .base import LevelwiseMethod, resize_like


def make_projector(in_channels: int, out_channels: int, ndim: int) -> nn.Module:
    """1x1 conv for (N, C, H, W) maps, Linear for (N, C) vectors / (N, L, C) tokens."""
    if ndim == 4:
        return nn.Conv2d(in_channels, out_channels, kernel_size=1)
    return nn.Linear(in_channels, out_channels)


def channel_projector(owner: str, mode: str, c_s: int, c_t: int, ndim: int):
    """The width alignment of a student feature: ``mode`` 'auto' builds a projector
    (:func:`make_projector`) only when the widths differ, 'always' always, 'none' never (and
    then the widths must match). Returns the module or None; ``owner`` names the method in
    the error."""
    if mode == 'always' or (mode == 'auto' and c_s != c_t):
        return make_projector(c_s, c_t, ndim)
    if c_s != c_t:
        raise ValueError(f"{owner}(projector='none') needs equal channels, got student {c_s} "
                         f'and teacher {c_t}.')
    return None


class ConvReg(nn.Sequential):
    """FitNet's regressor, conv (sized to map student onto teacher) + BN + ReLU (module
    docstring): (N, C_s, H_s, W_s) -> (N, C_t, H_t, W_t)."""

    def __init__(self, student_shape, teacher_shape, relu: bool = True):
        (c_s, h_s, w_s), (c_t, h_t, w_t) = student_shape[1:], teacher_shape[1:]
        if h_s == 2 * h_t and w_s == 2 * w_t:
            conv = nn.Conv2d(c_s, c_t, kernel_size=3, stride=2, padding=1)
        elif 2 * h_s == h_t and 2 * w_s == w_t:
            conv = nn.ConvTranspose2d(c_s, c_t, kernel_size=4, stride=2, padding=1)
        elif h_s >= h_t and w_s >= w_t:
            conv = nn.Conv2d(c_s, c_t, kernel_size=(1 + h_s - h_t, 1 + w_s - w_t))
        else:
            raise ValueError(f'ConvReg: no regressor from a {h_s}x{w_s} student map to a '
                             f'{h_t}x{w_t} teacher map (the student must be as large, or half '
                             'or twice the size); record points of matching sizes.')
        layers = [conv, nn.BatchNorm2d(c_t)]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


Projector = Literal['auto', 'always', 'none', 'convreg']


@MODELS.register_module()
class FeatureMSE(LevelwiseMethod):
    """MSE between the (projected) student feature and the teacher feature.

    The projector is sized from the recorded tensors: a 1x1 conv for maps (N, C, H, W), a Linear
    for vectors (N, C); tokens (N, L, C) project the last dimension. With ``projector='auto'`` it
    is created only when the channel counts differ. A student map of a different spatial size is
    resized bilinearly to the teacher's.

    Args:
        projector (str): 'auto' (default), 'always', 'none', or 'convreg' (FitNet's conv + BN
            + ReLU regressor for maps, always built; module docstring).
        loss_name (str): key of the returned loss. Default 'loss_mse'.
        share_levels, level_reduction: see :class:`LevelwiseMethod`.

    Block: one point per side (several levels give one term each): maps (N, C, H, W), vectors
    (N, C) or tokens (N, L, C) of any channel count, e.g. FitNet's hint
    ``student='backbone.layer2'`` with the teacher's matching stage. Returns ``loss_mse``.

    References:
        Paper: Romero, Ballas, Kahou, Chassang, Gatta, Bengio, "FitNets: Hints for Thin Deep
            Nets", ICLR 2015 (arXiv 1412.6550).
        Code: ``projector='convreg'`` follows megvii-research/mdistiller
            (``distillers/FitNet.py``, ``_common.ConvReg``).
    """

    def __init__(self, projector: Projector = 'auto', loss_name: LossName = 'loss_mse',
                 **kwargs):
        super().__init__(**kwargs)
        self.projector = projector
        self.loss_name = loss_name

    @staticmethod
    def _channels(x: torch.Tensor) -> int:
        return x.shape[-1] if x.dim() == 3 else x.shape[1]

    def build_level(self, student, teacher):
        if self.projector == 'convreg':
            if student.dim() != 4 or teacher.dim() != 4:
                raise ValueError("FeatureMSE(projector='convreg') regresses maps (N, C, H, W); "
                                 f'got student {tuple(student.shape)} and teacher '
                                 f'{tuple(teacher.shape)}.')
            return ConvReg(student.shape, teacher.shape)
        return channel_projector('FeatureMSE', self.projector, self._channels(student),
                                 self._channels(teacher), student.dim())

    def level_loss(self, student, teacher, connector, data_samples=None
                   ) -> Dict[str, torch.Tensor]:
        projected = resize_like(connector(student), teacher)
        return {self.loss_name: F.mse_loss(projected.float(), teacher.float())}
