"""SP -- "Similarity-Preserving Knowledge Distillation" (Tung, Mori, ICCV 2019; the authors'
formulation as shipped by megvii-research/mdistiller ``distillers/SP.py`` and
HobbitLong/RepDistiller ``distiller_zoo/SP.py``, "verified by original author").

The student is taught which samples of the batch the teacher finds alike, not the teacher's
activations themselves, so the two models may have any channel counts and map sizes::

    f_s (b, C_s, H_s, W_s), f_t (b, C_t, H_t, W_t)    one recorded pair (any shape (b, ...))
    Q = flatten(f) (b, D);  G = Q Q^T  (b, b)          per-batch Gram (similarity) matrix
    G~ = G / ||G[i, :]||_2 row by row                  F.normalize(G), eps 1e-12
    L_SP = ||G~_t - G~_s||_F^2 / b^2                   (the paper's Eq. 4)

Several pairs are summed, as the authors do (mdistiller ``sp_loss`` and RepDistiller's
``sum(loss_group)``: one term per pair, summed), which is :class:`LevelwiseMethod`'s
``level_reduction='sum'``. The authors' CIFAR-100 setting is one pair, the output of the
last stage (mdistiller ``feats[-1]``, RepDistiller ``feat[-2]``: after the last block, before
global pooling; for WRNs before the final BN + ReLU): ``backbone.layer3`` of our CIFAR ResNets
and WRNs. Loss weight 3000 (mdistiller ``CFG.SP.LOSS.FEAT_WEIGHT``; RepDistiller
``scripts/run_cifar_distill.sh``: ``-a 0 -b 3000``), CE weight 1, no logit KD.

Paper and code differ only in where the b^2 sits: the paper writes
``L_SP = 1/b^2 * sum over pairs ||G~_t - G~_s||_F^2`` and the total ``L_CE + gamma * L_SP``;
the code divides each pair's term by b^2 and multiplies the sum by 3000. The same loss; we follow
the code (b^2 here, 3000 as the block's ``loss_weight``).

The Gram matrices are formed in float32 at least, with autocast off (AMP): each entry sums D
products (D = 16384 for ResNet-8x4's last stage, 256 x 8 x 8), which can exceed float16's
range (65504).
"""
from typing import Dict

import torch
import torch.nn.functional as F

from ..registry import MODELS
from ..utils.arguments import LossName
from .base import LevelwiseMethod


def similarity_matrix(x: torch.Tensor) -> torch.Tensor:
    """(b, ...) -> (b, b): the row-L2-normalised Gram matrix of the flattened activations."""
    q = x.flatten(1)
    return F.normalize(q @ q.t(), dim=1)


def _float_gram(x: torch.Tensor) -> torch.Tensor:
    """:func:`similarity_matrix` in float32 at least, with autocast off (under AMP the product
    would otherwise run in float16 and can overflow: see the module docstring)."""
    with torch.autocast(device_type=x.device.type, enabled=False):
        return similarity_matrix(x.to(torch.promote_types(x.dtype, torch.float32)))


@MODELS.register_module()
class SP(LevelwiseMethod):
    """Similarity-preserving KD: ``||G~_t - G~_s||_F^2 / b^2`` per recorded pair, summed
    over the pairs, ``G~`` the row-normalised batch Gram matrix (module docstring).

    Args:
        loss_name (str): key of the returned loss. Default 'loss_sp'.
        share_levels, level_reduction: see :class:`LevelwiseMethod` (levels: recorded pairs;
            SP has no connector, so ``share_levels`` changes nothing; ``level_reduction``
            'sum', the default, is the authors' sum over pairs).

    Block: ``student='backbone.layer3'``, ``teacher='backbone.layer3'`` (CIFAR ResNets and
    WRNs; the last stage's output, weight 3000, the authors' CIFAR-100 setting); any tensors
    (b, ...) with the same batch size b on both sides: channel counts and spatial sizes need
    not match. Several points give one term each, summed. Returns ``loss_sp``.

    References:
        Paper: Tung, Mori, "Similarity-Preserving Knowledge Distillation", ICCV 2019
            (arXiv 1907.09682).
        Code: https://github.com/megvii-research/mdistiller (``distillers/SP.py``,
            ``CFG.SP``) and https://github.com/HobbitLong/RepDistiller
            (``distiller_zoo/SP.py``); the paper's authors released no code of their own.
    """

    def __init__(self, loss_name: LossName = 'loss_sp', **kwargs):
        super().__init__(**kwargs)
        self.loss_name = loss_name

    def build_level(self, student, teacher):
        if student.dim() < 2 or teacher.dim() < 2 or student.shape[0] != teacher.shape[0]:
            raise ValueError(f'SP compares the samples of one batch, so both points must give '
                             f'tensors (b, ...) with the same batch size b; got student '
                             f'{tuple(student.shape)} and teacher {tuple(teacher.shape)}.')
        return None

    def level_loss(self, student, teacher, connector, data_samples=None
                   ) -> Dict[str, torch.Tensor]:
        b = student.shape[0]
        if b == 0:
            return {self.loss_name: student.sum() * 0}
        g_s, g_t = _float_gram(student), _float_gram(teacher.detach())
        return {self.loss_name: (g_t - g_s.to(g_t.dtype)).pow(2).sum() / (b * b)}
