"""VID: variational information distillation (Ahn, Hu, Damianou, Lawrence, Dai, CVPR 2019).

The student maximises a variational lower bound on the mutual information between its features
and the teacher's: a Gaussian q(t | s) with a mean regressed from the student's map and a
learned variance per teacher channel, whose negative log-likelihood is the loss::

    f_s (N, C_s, H_s, W_s), f_t (N, C_t, H_t, W_t)     one recorded pair (a stage's output)
    the larger map is adaptive-average-pooled to the smaller one's size   -> (H, W)
    mu = regressor(f_s)  (N, C_t, H, W)      conv1x1(C_s->C_t) ReLU conv1x1(C_t->C_t) ReLU
                                             conv1x1(C_t->C_t), no bias (num_mid = C_t)
    sigma^2 = softplus(alpha) + eps  (C_t,)  alpha learned, one per teacher channel,
                                             initialised so that sigma^2 = init_pred_var
    L_VID = mean over (N, C_t, H, W) of 0.5 * ((mu - f_t)^2 / sigma^2 + log sigma^2)

Several pairs (the authors' CIFAR setting: the outputs of the three stages, RepDistiller
``feat[1:-1]``, mdistiller ``feats[1:]``) give one regressor and one variance each and are
summed (:class:`LevelwiseMethod`'s ``level_reduction='sum'``). The teacher carries no gradient.
The value can be negative (the ``log sigma^2`` term); only its gradient matters.

Defaults (both authors' code): ``init_pred_var`` 5.0, ``eps`` 1e-5, the regressor's middle
width equal to the teacher's channels (RepDistiller ``VIDLoss(s, t, t)``, mdistiller
``init_vid_modules``), loss weight 1, CE weight 1, no logit KD (RepDistiller
``scripts/run_cifar_distill.sh``: ``-a 0 -b 1``; mdistiller ``CFG.VID.LOSS.FEAT_WEIGHT``).

Where the two authors' copies differ: mdistiller keeps its ``log_scales`` in a Python list, so
they are neither registered nor given to the optimizer (the variance stays at 5.0 for the whole
run); RepDistiller registers ``log_scale`` as a parameter and trains it, as the paper says
(the variance is learned by maximising the bound). We follow the paper and RepDistiller: the
variances are parameters (``log_scales``, one per level) and trained (with the model's
optimizer, weight decay included, as RepDistiller's SGD does). Both authors pool to a square
``(t_H, t_H)`` comparing heights only; here the larger map is pooled to the smaller one's
``(H, W)`` (the same for the square maps of their models). ``softplus`` is
``torch.nn.functional.softplus`` (the authors write ``log(1 + exp(alpha))``: equal up to rounding;
softplus is linear above alpha 20, where the two differ by < 1e-8 relative, and stays finite
where ``exp(alpha)`` overflows).

The loss is computed in float32 at least (AMP): the squared difference over a variance.
"""
import math
from typing import Dict

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..registry import MODELS
from ..utils.arguments import LossName, PositiveFloat
from .base import LevelwiseMethod, pool_to_smaller


class _VIDLevel(nn.Module):
    """One level's regressor (three bias-free 1x1 convolutions) and log-scale (C_t,)."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int,
                 init_pred_var: float, eps: float):
        super().__init__()
        self.regressor = nn.Sequential(
            nn.Conv2d(in_channels, mid_channels, 1, bias=False), nn.ReLU(),
            nn.Conv2d(mid_channels, mid_channels, 1, bias=False), nn.ReLU(),
            nn.Conv2d(mid_channels, out_channels, 1, bias=False))
        # softplus(alpha) + eps = init_pred_var (the authors' log(exp(v - eps) - 1))
        self.log_scale = nn.Parameter(
            torch.full((out_channels,), math.log(math.expm1(init_pred_var - eps))))


@MODELS.register_module()
class VID(LevelwiseMethod):
    """Variational information distillation: the Gaussian negative log-likelihood of the
    teacher's map under a mean regressed from the student's and a learned per-channel
    variance, averaged over the map and summed over the pairs (module docstring).

    Args:
        init_pred_var (float): initial variance sigma^2 of every teacher channel. Default 5.0
            (RepDistiller ``VIDLoss``, mdistiller ``CFG.VID.INIT_PRED_VAR``).
        eps (float): floor added to the softplus variance. Default 1e-5 (the same sources).
        loss_name (str): key of the returned loss. Default 'loss_vid'.
        share_levels, level_reduction: see :class:`LevelwiseMethod` (``share_levels`` shares
            one regressor and variance between levels of equal channels; 'sum', the default,
            is the authors' sum over the pairs).

    Block: ``student=['backbone.layer1', 'backbone.layer2', 'backbone.layer3']`` and the same
    teacher points (CIFAR ResNets and WRNs: the three stages' outputs, the authors' CIFAR-100
    setting); maps (N, C, H, W) on both sides, channels free (the regressor maps C_s to C_t),
    the larger map pooled to the smaller. Returns ``loss_vid``.

    References:
        Paper: Ahn, Hu, Damianou, Lawrence, Dai, "Variational Information Distillation for
            Knowledge Transfer", CVPR 2019 (arXiv 1904.05835).
        Code: https://github.com/HobbitLong/RepDistiller (``distiller_zoo/VID.py``, "code
            from author", b84f547) and https://github.com/megvii-research/mdistiller
            (``mdistiller/distillers/VID.py``, a08d46f); the authors' repository is
            https://github.com/ssahn0215/variational-information-distillation.
    """

    def __init__(self, init_pred_var: PositiveFloat = 5.0, eps: PositiveFloat = 1e-5,
                 loss_name: LossName = 'loss_vid', **kwargs):
        super().__init__(**kwargs)
        if init_pred_var <= eps:
            raise ValueError(f'VID: init_pred_var ({init_pred_var}) must exceed eps ({eps}): '
                             'the variance is softplus(alpha) + eps.')
        self.init_pred_var, self.eps = float(init_pred_var), float(eps)
        self.loss_name = loss_name

    def build_level(self, student, teacher):
        if student.dim() != 4 or teacher.dim() != 4 or student.shape[0] != teacher.shape[0]:
            raise ValueError(f'VID needs feature maps (N, C, H, W) of one batch on both sides; '
                             f'got student {tuple(student.shape)} and teacher '
                             f'{tuple(teacher.shape)}.')
        c_s, c_t = student.shape[1], teacher.shape[1]
        return _VIDLevel(c_s, c_t, c_t, self.init_pred_var, self.eps)

    def level_loss(self, student, teacher, connector, data_samples=None
                   ) -> Dict[str, torch.Tensor]:
        f_s, f_t = pool_to_smaller(student, teacher.detach())
        dtype = torch.promote_types(f_s.dtype, torch.float32)
        with torch.autocast(device_type=f_s.device.type, enabled=False):
            w = connector.regressor[0].weight
            mean = connector.regressor(f_s.to(w.dtype)).to(dtype)
            var = (F.softplus(connector.log_scale) + self.eps).to(dtype).view(1, -1, 1, 1)
            nll = 0.5 * ((mean - f_t.to(dtype)).pow(2) / var + var.log())
        return {self.loss_name: nll.mean()}
