"""Per-channel distillation of dense maps: CWD (each channel a distribution over space) and PKD
(each channel standardised over the batch and space).

CWD -- "Channel-wise Knowledge Distillation for Dense Prediction" (Shu et al., ICCV 2021;
reference code: MMRazor ``losses/cwd.py``, ``ChannelWiseDivergence``)::

    maps s, t (N, C, H, W)
    phi(x)[n, c] = softmax over the H*W positions of x[n, c] / tau         (N, C, H*W)
    loss = tau^2 / (N * C) * sum_{n, c} KL(phi(t)[n, c] || phi(s)[n, c])

  Each channel's map becomes a distribution over positions, so the student learns *where* each
  channel (a class, for segmentation logits) is active, not its scale. MMRazor's settings: tau
  1, weight 5 on PSPNet's logits (Cityscapes), 10 on every FPN level (COCO); the authors' own
  segmentation setting: tau 4, weight 3.

PKD -- "PKD: General Distillation Framework for Object Detectors via Pearson Correlation
Coefficient" (Cao et al., NeurIPS 2022; reference code: MMRazor ``losses/pkd_loss.py``)::

    z(x)[:, c] = (x[:, c] - mean_{N,H,W}) / (std_{N,H,W} + 1e-6)   unbiased std, per channel
    loss = MSE(z(s), z(t)) / 2 = (M - 1) / M * mean_c (1 - r_c),  M = N*H*W

  r_c is the Pearson correlation of channel c between the two models over the batch and the
  positions: PKD imitates the pattern of each channel, free of its magnitude (teacher FPN
  features of another detector family may have a very different scale). MMRazor's settings:
  FPN levels 0-3, weight 6 (Faster R-CNN), 10 (RetinaNet).

Both resize a student map of another size to the teacher's (bilinear; MMRazor's PKD does the
same, its CWD asserts equal sizes). Where the channel counts differ (features of other widths)
a 1x1 conv on the student aligns them, sized from the dry run (``projector='auto'``, ours:
MMRazor uses both only at equal widths). Each level of multi-level inputs (FPN) is one term,
summed. Degenerate maps stay finite: an empty map (no sample or position) gives 0, a constant
channel gives a uniform distribution (CWD) or zeros (PKD), and a single position per channel
(M = 1, no unbiased std) gives zeros in PKD.
"""
from typing import Dict, Literal

import torch
import torch.nn.functional as F

from ..losses import kl_from_log_probs
from ..registry import MODELS
from ..utils.arguments import PositiveFloat
from .base import LevelwiseMethod, resize_like
from .feature_mse import channel_projector

Projector = Literal['auto', 'always', 'none']


class _ChannelMethod(LevelwiseMethod):
    """Shared: (N, C, H, W) checks, the optional 1x1 alignment, float32 (AMP), resizing."""

    def __init__(self, projector: Projector = 'auto', **kwargs):
        super().__init__(**kwargs)
        self.projector = projector

    def build_level(self, student, teacher):
        name = type(self).__name__
        if student.dim() != 4 or teacher.dim() != 4:
            raise ValueError(f'{name} distils dense maps (N, C, H, W); got student '
                             f'{tuple(student.shape)} and teacher {tuple(teacher.shape)}.')
        return channel_projector(name, self.projector, student.shape[1], teacher.shape[1], 4)

    def pair(self, student, teacher, connector):
        s = resize_like(connector(student), teacher).float()
        return s, teacher.detach().float()


@MODELS.register_module()
class CWD(_ChannelMethod):
    """Channel-wise distillation: ``tau^2 / (N C) * sum KL`` of per-channel spatial softmaxes
    (module docstring).

    Args:
        tau (float): temperature. Default 1.0 (MMRazor; the authors use 4 on segmentation).
        projector (str): 'auto' (a 1x1 conv only when channels differ), 'always' or 'none'.
        share_levels, level_reduction: see :class:`LevelwiseMethod`.

    Block: any dense maps, e.g. ``'decode_head.conv_seg'`` (segmentation logits) or
    ``'neck'`` (every FPN level). Returns ``loss_cwd``.

    References:
        Paper: Shu, Liu, Gao, Yan, Shen, "Channel-wise Knowledge Distillation for Dense
            Prediction", ICCV 2021 (arXiv 2011.13256).
        Code: the authors' link https://git.io/Distiller; the reference followed here is
            MMRazor's ``losses/cwd.py`` (``ChannelWiseDivergence``, open-mmlab/mmrazor).
    """

    def __init__(self, tau: PositiveFloat = 1.0, projector: Projector = 'auto', **kwargs):
        super().__init__(projector, **kwargs)
        self.tau = float(tau)

    def level_loss(self, student, teacher, connector, data_samples=None
                   ) -> Dict[str, torch.Tensor]:
        s, t = self.pair(student, teacher, connector)
        n, c = t.shape[:2]
        if s.numel() == 0:
            return dict(loss_cwd=s.sum() * 0)
        log_q = F.log_softmax(s.flatten(2) / self.tau, dim=2)
        log_p = F.log_softmax(t.flatten(2) / self.tau, dim=2)
        kl = kl_from_log_probs(log_p, log_q, dim=2).sum()
        return dict(loss_cwd=kl * self.tau ** 2 / (n * c))


def channel_standardize(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """PKD's normalisation: each channel of (N, C, H, W) to zero mean and unit (unbiased)
    standard deviation over (N, H, W), ``eps`` added to the std (MMRazor's ``PKDLoss.norm``).
    Fewer than two values per channel give zeros."""
    rows = x.transpose(0, 1).flatten(1)  # (C, N*H*W)
    centred = rows - rows.mean(dim=1, keepdim=True)
    if rows.shape[1] >= 2:
        centred = centred / (rows.std(dim=1, keepdim=True) + eps)
    n, c, h, w = x.shape
    return centred.view(c, n, h, w).transpose(0, 1)


@MODELS.register_module()
class PKD(_ChannelMethod):
    """Pearson correlation KD: ``MSE(z(s), z(t)) / 2`` of per-channel standardised maps
    (module docstring).

    Args:
        eps (float): added to each channel's std. Default 1e-6 (MMRazor).
        projector (str): 'auto' (a 1x1 conv only when channels differ), 'always' or 'none'.
        share_levels, level_reduction: see :class:`LevelwiseMethod`.

    Block: e.g. ``student=['neck[0]', 'neck[1]', 'neck[2]', 'neck[3]']`` and the same for the
    teacher (MMRazor's four FPN levels). Returns ``loss_pkd``.

    References:
        Paper: Cao, Zhang, Gao, Cheng, Cheng, Cheng, "PKD: General Distillation Framework for
            Object Detectors via Pearson Correlation Coefficient", NeurIPS 2022 (arXiv
            2207.02039).
        Code: the reference followed here is MMRazor's ``losses/pkd_loss.py``
            (open-mmlab/mmrazor).
    """

    def __init__(self, eps: PositiveFloat = 1e-6, projector: Projector = 'auto', **kwargs):
        super().__init__(projector, **kwargs)
        self.eps = float(eps)

    def level_loss(self, student, teacher, connector, data_samples=None
                   ) -> Dict[str, torch.Tensor]:
        s, t = self.pair(student, teacher, connector)
        if s.numel() == 0:
            return dict(loss_pkd=s.sum() * 0)
        z_s, z_t = channel_standardize(s, self.eps), channel_standardize(t, self.eps)
        return dict(loss_pkd=F.mse_loss(z_s, z_t) / 2)
