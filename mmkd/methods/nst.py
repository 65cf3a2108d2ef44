"""NST: neuron selectivity transfer (Huang, Wang, "Like What You Like", arXiv 1707.01219, 2017).

Each channel's spatial activation pattern is one sample of a distribution; the student's
channels are made to follow the same distribution as the teacher's by minimising the squared
maximum mean discrepancy (MMD) between the two sets, with the polynomial kernel
``k(x, y) = (x . y)^2`` (the paper's d = 2, c = 0)::

    f_s (N, C_s, H_s, W_s), f_t (N, C_t, H_t, W_t)     one recorded pair (a stage's output)
    the larger map is adaptive-average-pooled to the smaller one's size   -> (H, W)
    s = f_s viewed (N, C_s, HW), each channel L2-normalised over HW (F.normalize, eps 1e-12)
    t = f_t viewed (N, C_t, HW), the same
    K_ab = (a_i . b_j)^2 for every channel pair          (N, C_a, C_b)
    L_NST = mean(K_tt) + mean(K_ss) - 2 mean(K_st)        (means over N and the channel pairs)

per sample and averaged over the batch, i.e. the paper's
``1/C_T^2 sum k(t, t') + 1/C_S^2 sum k(s, s') - 2/(C_S C_T) sum k(s, t)`` (Eq. 4): the two
models may have different channel counts (no connector). ``mean(K_tt)`` is constant for the
student (the authors detach it) and is kept in the value. Several pairs (the authors' CIFAR
setting: the three stages' outputs, RepDistiller ``feat[1:-1]``, mdistiller ``feats[1:]``) are
summed (:class:`LevelwiseMethod`'s ``level_reduction='sum'``). The teacher carries no gradient.

Defaults: loss weight 50, CE weight 1, no logit KD (mdistiller ``CFG.NST.LOSS.FEAT_WEIGHT``;
RepDistiller ``scripts/run_cifar_distill.sh``: ``-a 0 -b 50``). Paper and code differ in the
factor: the paper writes ``lambda / 2 * MMD^2``, the code ``50 * MMD^2`` with no 1/2; we follow
the code (the block's ``loss_weight`` 50 is the code's factor). Both authors pool to a square
``(t_H, t_H)`` comparing heights only; here the larger map is pooled to the smaller one's
``(H, W)`` (the same for the square maps of their models).

The kernels are formed in float32 at least with autocast off (AMP).
"""
from typing import Dict

import torch
import torch.nn.functional as F

from ..registry import MODELS
from ..utils.arguments import LossName
from .base import LevelwiseMethod, pool_to_smaller


def poly_kernel_mean(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N, C_a, D), (N, C_b, D) -> the mean over N, C_a, C_b of ``(a_i . b_j)^2``."""
    return (a @ b.transpose(1, 2)).pow(2).mean()


def nst_mmd(f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
    """NST's squared MMD (polynomial kernel) of one pair of maps (module docstring); the
    teacher is used as given (detach it for no teacher gradient)."""
    f_s, f_t = pool_to_smaller(f_s, f_t)
    s = F.normalize(f_s.flatten(2), dim=2)
    t = F.normalize(f_t.flatten(2), dim=2)
    return poly_kernel_mean(t, t) + poly_kernel_mean(s, s) - 2 * poly_kernel_mean(s, t)


@MODELS.register_module()
class NST(LevelwiseMethod):
    """Neuron selectivity transfer: the squared MMD (polynomial kernel, d 2, c 0) between the
    student's and the teacher's channels, each a spatially L2-normalised activation pattern,
    per sample and averaged, summed over the pairs (module docstring).

    Args:
        loss_name (str): key of the returned loss. Default 'loss_nst'.
        share_levels, level_reduction: see :class:`LevelwiseMethod` (NST has no connector, so
            ``share_levels`` changes nothing; 'sum', the default, is the authors' sum over
            the pairs).

    Block: ``student=['backbone.layer1', 'backbone.layer2', 'backbone.layer3']`` and the same
    teacher points, loss weight 50 (the authors' CIFAR-100 setting); maps (N, C, H, W) of one
    batch, channels free, the larger map pooled to the smaller. Returns ``loss_nst``.

    References:
        Paper: Huang, Wang, "Like What You Like: Knowledge Distill via Neuron Selectivity
            Transfer", arXiv 1707.01219, 2017.
        Code: https://github.com/HobbitLong/RepDistiller (``distiller_zoo/NST.py``, b84f547)
            and https://github.com/megvii-research/mdistiller
            (``mdistiller/distillers/NST.py``, a08d46f), the implementations behind the
            CRD paper's CIFAR-100 numbers.
    """

    def __init__(self, loss_name: LossName = 'loss_nst', **kwargs):
        super().__init__(**kwargs)
        self.loss_name = loss_name

    def build_level(self, student, teacher):
        if student.dim() != 4 or teacher.dim() != 4 or student.shape[0] != teacher.shape[0]:
            raise ValueError(f'NST needs feature maps (N, C, H, W) of one batch on both sides; '
                             f'got student {tuple(student.shape)} and teacher '
                             f'{tuple(teacher.shape)}.')
        return None

    def level_loss(self, student, teacher, connector, data_samples=None
                   ) -> Dict[str, torch.Tensor]:
        dtype = torch.promote_types(student.dtype, torch.float32)
        with torch.autocast(device_type=student.device.type, enabled=False):
            loss = nst_mmd(student.to(dtype), teacher.detach().to(dtype))
        return {self.loss_name: loss}
