"""FBKD: attention-guided and non-local distillation on FPN levels (Zhang & Ma, "Improve Object
Detection with Feature-based Knowledge Distillation: Towards Accurate and Efficient Detectors",
ICLR 2021). Anchor: MMRazor's ``FBKDLoss`` (``mmrazor/models/losses/fbkd_loss.py``) and its
``FBKDStudentConnector`` / ``FBKDTeacherConnector``
(``mmrazor/models/architectures/connectors/fbkd_connector.py``), open-mmlab/mmrazor commit
0fe347f, which say they follow the authors' code. The authors' repository
(ArchipLab-LinfengZhang/Object-Detection-Knowledge-Distillation-ICLR2021, HEAD 3e2bb66) holds
only a README pointing to the OpenReview supplementary material, so MMRazor is the reference.

Data flow for one level, student map s (N, C_s, H, W), teacher map t (N, C_t, H, W) (no
gradient; the same H, W)::

    attention of a map x (N, C, H, W), temperature T:
        A_sp(x) = H*W * softmax_{HW}(mean_C |x| / T_sp)           (N, 1, H, W)
        A_ch(x) = C   * softmax_C  (mean_HW |x| / T_ch)           (N, C, 1, 1)
    M_sp = (A_sp(t) + A_sp(s)) / 2, detached          spatial mask, mean 1 per image

    feature   : a1 * sqrt( sum( (t - conv1x1(s))^2 * M_sp ) )           conv1x1: C_s -> C_t
    channel   : a2 * || mean_HW t - Linear(mean_HW s) ||_2               Linear: C_s -> C_t
    spatial   : a3 * || mean_C t - conv3x3(mean_C s) ||_2                conv3x3: 1 -> 1
    non-local : a4 * || NL_t(t) - conv1x1(NL_s(s)) ||_2                  conv1x1: C_s -> C_t

``||.||_2`` is the Frobenius norm of the whole batch (``torch.dist``); the sums run over the
batch too (no division by N). NL_s, NL_t are mmcv ``NonLocal2d`` blocks (mode
``dot_product``: pairwise weight theta^T phi / (number of phi positions); output x +
BN(conv_out(y)), BN's weight initialised to 0 so NL(x) = x at the start), one on each side,
both trained by the non-local term (the teacher's own network stays frozen; its non-local
block is a module of this method, as MMRazor's teacher connector). With ``sub_sample`` the
g and phi branches are max-pooled by 2 (mmcv's) and then by ``maxpool_stride`` (MMRazor's
``NonLocal2dMaxpoolNstride`` adds its pooling after mmcv's), i.e. by 2 x ``maxpool_stride``.

Defaults, each MMRazor's (``configs/distill/mmdet/fbkd/
fbkd_fpn_faster-rcnn_r101_faster-rcnn_r50_1x_coco.py``, FPN levels ``neck.fpn_convs.0-3``,
256 channels, and the loss's / connectors' defaults):

=========================  ===================  =============================================
argument                   default              source
=========================  ===================  =============================================
mask_l2_weight (a1)        7e-5                 ``FBKDLoss`` ("default value in source code")
channel_weight (a2)        4e-3                 ``FBKDLoss``
spatial_weight (a3)        4e-3                 ``FBKDLoss``
nonlocal_weight (a4)       7e-5                 ``FBKDLoss`` (``nonloacl_weight``)
spatial_t, channel_t       0.5, 0.5             connectors' ``spatial_T``, ``channel_T``
mode                       'dot_product'        the config (and the connectors' default)
sub_sample                 True                 the config, every level
reduction                  (4, 4, 2)            the config: 4 on levels 0-1, default 2 after
maxpool_stride             (8, 4, 2)            the config: 8, 4, then the default 2
=========================  ===================  =============================================

A per-level argument is one value for every level or a sequence whose last value repeats for
the remaining levels (``(8, 4, 2)`` on four levels is MMRazor's 8, 4, 2, 2). Unlike MMRazor
(which assumes C_s = C_t), the three adaptation layers map C_s -> C_t, so student and teacher
may differ in width (with equal widths the two are the same).

Difference from the paper, as MMRazor (which notes it follows the released code): the channel
mask is computed but does not weight the feature term (``channel_mask=True`` applies the
paper's ``M_sp * M_ch`` instead; it needs C_s = C_t). The paper's text could not be read here
(no network): this implementation follows MMRazor term by term.
"""
from typing import Dict, Literal, Sequence, Union

import torch
import torch.nn as nn
from mmcv.cnn import NonLocal2d

from ..registry import MODELS
from ..utils.arguments import InitCfg, NonNegativeFloat, PositiveFloat, PositiveInt
from .base import BaseDistillMethod, LevelwiseMethod

PerLevelInt = Union[PositiveInt, Sequence[PositiveInt]]
PerLevelBool = Union[bool, Sequence[bool]]


def per_level(value, level: int):
    """A per-level argument's value on ``level``: a scalar for all, or a sequence whose last
    value repeats."""
    if isinstance(value, (list, tuple)):
        return value[min(level, len(value) - 1)]
    return value


def attention_masks(x: torch.Tensor, spatial_t: float, channel_t: float):
    """MMRazor's spatial (N, 1, H, W) and channel (N, C, 1, 1) attention of a map: H*W (or C)
    times the softmax of the mean absolute value over channels (or positions) / T."""
    n, c, h, w = x.shape
    spatial = torch.softmax(x.abs().mean(1).reshape(n, -1) / spatial_t, dim=1) * (h * w)
    channel = torch.softmax(x.abs().mean((2, 3)) / channel_t, dim=1) * c
    return spatial.reshape(n, 1, h, w), channel.reshape(n, c, 1, 1)


def non_local_block(channels: int, reduction: int, mode: str, sub_sample: bool,
                    maxpool_stride: int) -> NonLocal2d:
    """mmcv's NonLocal2d (1x1 convs, BN on conv_out initialised to 0) with MMRazor's extra
    ``maxpool_stride`` pooling after mmcv's 2x2 on the g and phi branches."""
    block = NonLocal2d(channels, sub_sample=sub_sample, reduction=reduction,
                       conv_cfg=dict(type='Conv2d'), norm_cfg=dict(type='BN'), mode=mode,
                       zeros_init=True)
    if sub_sample:
        pool = nn.MaxPool2d(kernel_size=(maxpool_stride, maxpool_stride))
        block.g = nn.Sequential(block.g, pool)
        block.phi = nn.Sequential(block.phi, pool)
    return block


class FBKDLevel(nn.Module):
    """The student and teacher connectors of one level; names as MMRazor's."""

    def __init__(self, student_channels: int, teacher_channels: int, reduction: int, mode: str,
                 sub_sample: bool, maxpool_stride: int):
        super().__init__()
        c_s, c_t = student_channels, teacher_channels
        self.channel_wise_adaptation = nn.Linear(c_s, c_t)
        self.spatial_wise_adaptation = nn.Conv2d(1, 1, kernel_size=3, stride=1, padding=1)
        self.adaptation_layers = nn.Conv2d(c_s, c_t, kernel_size=1, stride=1, padding=0)
        self.student_non_local = non_local_block(c_s, reduction, mode, sub_sample,
                                                 maxpool_stride)
        self.non_local_adaptation = nn.Conv2d(c_s, c_t, kernel_size=1, stride=1, padding=0)
        self.teacher_non_local = non_local_block(c_t, reduction, mode, sub_sample,
                                                 maxpool_stride)
        self.pool = 2 * maxpool_stride if sub_sample else 1


def _wide(x: torch.Tensor) -> torch.Tensor:
    """Half-precision values (AMP) are summed in float32; float32/64 stay as they are."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


@MODELS.register_module()
class FBKD(LevelwiseMethod):
    """Attention-guided and non-local distillation (module docstring), one set of
    connectors per FPN level.

    Args:
        mask_l2_weight (float): a1, weight of the attention-masked feature term. Default 7e-5.
        channel_weight (float): a2, weight of the channel (pooled-vector) term. Default 4e-3.
        spatial_weight (float): a3, weight of the spatial (pooled-map) term. Default 4e-3.
        nonlocal_weight (float): a4, weight of the non-local relation term. Default 7e-5.
        spatial_t (float): temperature of the spatial attention. Default 0.5.
        channel_t (float): temperature of the channel attention. Default 0.5.
        channel_mask (bool): also weight the feature term by the mean channel attention, as
            the paper's equation (MMRazor and the released code do not). Default False.
        mode (str): the non-local pairwise function, 'dot_product' (default, MMRazor's
            config) or 'embedded_gaussian' (mmcv's default).
        reduction (int | sequence of int): non-local channel reduction per level (inner
            channels = C // reduction). Default (4, 4, 2).
        sub_sample (bool | sequence of bool): max-pool the non-local g and phi branches on
            each level. Default True.
        maxpool_stride (int | sequence of int): the extra pooling of those branches after
            mmcv's 2x2 (total pooling 2 x stride). Default (8, 4, 2).
        level_reduction: 'sum' (default; MMRazor sums one loss per level) or 'mean'.

    Block: FPN levels on both sides (``'neck'``, or ``['neck[0]', ..., 'neck[3]']`` as
    MMRazor), maps (N, C, H, W) of equal H, W per level, any channel counts. Returns
    ``loss_feat``, ``loss_channel``, ``loss_spatial`` and ``loss_nonlocal``, each summed over
    levels; their sum is MMRazor's ``FBKDLoss`` summed over its per-level losses. Keep the
    block's ``loss_weight`` at 1 for MMRazor's weighting.

    References:
        Paper: Zhang, Ma, "Improve Object Detection with Feature-based Knowledge
            Distillation: Towards Accurate and Efficient Detectors", ICLR 2021
            (https://openreview.net/forum?id=uKhGRvM8QNH).
        Code: MMRazor ``FBKDLoss``, ``FBKDStudentConnector``, ``FBKDTeacherConnector``
            (open-mmlab/mmrazor 0fe347f); the authors' repository
            ArchipLab-LinfengZhang/Object-Detection-Knowledge-Distillation-ICLR2021 has no
            code (its README points to the OpenReview supplementary material).
    """

    def __init__(self, mask_l2_weight: NonNegativeFloat = 7e-5,
                 channel_weight: NonNegativeFloat = 4e-3,
                 spatial_weight: NonNegativeFloat = 4e-3,
                 nonlocal_weight: NonNegativeFloat = 7e-5,
                 spatial_t: PositiveFloat = 0.5, channel_t: PositiveFloat = 0.5,
                 channel_mask: bool = False,
                 mode: Literal['dot_product', 'embedded_gaussian'] = 'dot_product',
                 reduction: PerLevelInt = (4, 4, 2), sub_sample: PerLevelBool = True,
                 maxpool_stride: PerLevelInt = (8, 4, 2),
                 level_reduction: Literal['sum', 'mean'] = 'sum', init_cfg: InitCfg = None):
        super().__init__(share_levels=False, level_reduction=level_reduction,
                         init_cfg=init_cfg)
        for name, value in dict(reduction=reduction, sub_sample=sub_sample,
                                maxpool_stride=maxpool_stride).items():
            if isinstance(value, (list, tuple)) and not value:
                raise ValueError(f'FBKD argument {name} must be a value or a non-empty '
                                 'sequence (one per level, the last repeating), got [].')
        self.weights = dict(feat=float(mask_l2_weight), channel=float(channel_weight),
                            spatial=float(spatial_weight), nonlocal_=float(nonlocal_weight))
        self.spatial_t, self.channel_t = float(spatial_t), float(channel_t)
        self.channel_mask, self.mode = channel_mask, mode
        self.reduction, self.sub_sample = reduction, sub_sample
        self.maxpool_stride = maxpool_stride

    @staticmethod
    def _check_pair(s: torch.Tensor, t: torch.Tensor, level: int, pool: int = 1):
        if s.dim() != 4 or t.dim() != 4:
            raise ValueError(f'FBKD needs (N, C, H, W) maps on both sides; level {level} '
                             f'gives student {tuple(s.shape)} and teacher {tuple(t.shape)}.')
        if s.shape[2:] != t.shape[2:]:
            raise ValueError(f'FBKD: level {level} has student map {tuple(s.shape[2:])} and '
                             f'teacher map {tuple(t.shape[2:])}; the sizes must be equal '
                             '(record the same FPN levels on both sides).')
        if min(s.shape[2:]) < pool:
            raise ValueError(
                f'FBKD: level {level} is {tuple(s.shape[2:])}, smaller than its non-local '
                f'pooling ({pool} = 2 x maxpool_stride); lower maxpool_stride or set '
                'sub_sample=False for that level (a per-level sequence).')

    def build(self, student, teacher) -> None:
        for i, (s, t) in enumerate(self._pairs(student, teacher)):
            # The pooling is checked on the real batches only (forward): a small dry run
            # (the config tests use 64x64 images) sizes the modules all the same.
            self._check_pair(s, t, i)
            if self.channel_mask and s.shape[1] != t.shape[1]:
                raise ValueError(f'FBKD(channel_mask=True) needs equal channels, got student '
                                 f'{s.shape[1]} and teacher {t.shape[1]} on level {i}.')
            self.connectors.append(FBKDLevel(s.shape[1], t.shape[1], per_level(
                self.reduction, i), self.mode, per_level(self.sub_sample, i),
                per_level(self.maxpool_stride, i)))
        BaseDistillMethod.build(self, student, teacher)

    def forward(self, student, teacher, data_samples=None) -> Dict[str, torch.Tensor]:
        for i, (s, t) in enumerate(self._pairs(student, teacher)):
            self._check_pair(s, t, i, self.connectors[i].pool)
        return super().forward(student, teacher, data_samples)

    def level_loss(self, student, teacher, connector, data_samples=None
                   ) -> Dict[str, torch.Tensor]:
        s, t = student, teacher.detach()
        n, _, h, w = s.shape
        s_spatial, s_channel = attention_masks(s, self.spatial_t, self.channel_t)
        t_spatial, t_channel = attention_masks(t, self.spatial_t, self.channel_t)
        mask = ((t_spatial + s_spatial) / 2).detach()
        if self.channel_mask:
            mask = mask * ((t_channel + s_channel) / 2).detach()

        diff = (_wide(t) - _wide(connector.adaptation_layers(s))) ** 2
        feat = (diff * mask).sum() ** 0.5
        channel = torch.dist(_wide(t.mean((2, 3))),
                             _wide(connector.channel_wise_adaptation(s.mean((2, 3)))))
        spatial = torch.dist(_wide(t.mean(1, keepdim=True)), _wide(
            connector.spatial_wise_adaptation(s.mean(1).reshape(n, 1, h, w))))
        relation = torch.dist(_wide(connector.teacher_non_local(t)), _wide(
            connector.non_local_adaptation(connector.student_non_local(s))), p=2)
        w_ = self.weights
        return dict(loss_feat=w_['feat'] * feat, loss_channel=w_['channel'] * channel,
                    loss_spatial=w_['spatial'] * spatial,
                    loss_nonlocal=w_['nonlocal_'] * relation)
