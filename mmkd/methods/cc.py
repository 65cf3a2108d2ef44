"""CC: correlation congruence (Peng, Jin, Liu, Li, Wu, Liu, Zhou, Zhang, ICCV 2019).

The student and the teacher penultimate features are each mapped by a trainable linear
embedding into a common space, and the student matches the teacher's correlations between
the samples of a batch::

    features     s (N, Ds), t (N, Dt)          (N, ...) flattened, as the authors' view(N, -1)
    embeddings   e_s = W_s s + b_s, e_t = W_t t + b_t   (N, D), D = embed_dim (128)
                 both linear layers created by build() from the dry run's widths and both
                 trained (RepDistiller puts embed_s and embed_t in its trainable list); the
                 teacher's features are detached, its embedding is not
    kernel='repdistiller' (default):
                 delta = |e_s - e_t|                    (N, D)
                 loss  = 1/(N-1) sum_{i<N-1} sum_d delta[i, d] * delta[i+1, d]
    kernel='gaussian' | 'bilinear' (torchdistill's CCKDLoss):
                 C[i, j] = k(e_i, e_j) on each side     (N, N)
                 bilinear: k = <e_i, e_j>
                 gaussian: k = exp(-2 gamma) sum_{p=0..P} (2 gamma)^p / p! <e_i, e_j>^p
                           (the P-order Taylor expansion of exp(-gamma ||e_i - e_j||^2) for
                           unit vectors; applied to the embeddings as they are, as
                           torchdistill does)
                 loss  = ||C_s - C_t||_F / N^2          (torchdistill's reduction 'batchmean')

Followed: RepDistiller's ``distiller_zoo/CC.py`` (``Correlation``, "the authors nicely shared
the code with me", HobbitLong/RepDistiller b84f547) with ``models/util.py``'s ``LinearEmbed``
(``feat_dim`` 128) on ``feat[-1]`` (the pooled penultimate feature), as wired in its
``train_student.py``; its CIFAR-100 runs (CRD paper, Table 1) use ``-b 0.02`` with no logit
KD. That code is not the paper's correlation matrix: it multiplies the embedding differences
of consecutive samples of the batch (its value depends on the batch order, which is random).
The paper's formulation (a correlation matrix with the Gaussian RBF kernel approximated by its
Taylor series, gamma 0.4, P 2, ``||C_s - C_t||`` divided by N^2) is offered as
``kernel='gaussian'``, as torchdistill's ``CCKDLoss`` (3e4373c) writes it (its sample
ImageNet config: ``gamma 0.4``, ``max_p 2``, ``reduction 'batchmean'``, weight 0.003,
embeddings of width 128 with bias); ``kernel='bilinear'`` is its bilinear-pool option.

A batch of one sample: 'repdistiller' has no consecutive pair and gives 0 (the authors' code:
the mean of nothing, NaN); the matrix kernels are defined.
"""
from typing import Dict, Literal

import torch
import torch.nn as nn

from ..registry import MODELS
from ..utils.arguments import InitCfg, NonNegativeInt, PositiveFloat, PositiveInt
from .base import LevelwiseMethod


def gaussian_correlation(e: torch.Tensor, gamma: float, max_p: int) -> torch.Tensor:
    """(N, D) -> (N, N): exp(-2 gamma) sum_{p=0..max_p} (2 gamma)^p / p! (e e^T)^p."""
    dot = e @ e.t()
    out = torch.ones_like(dot)
    term = torch.ones_like(dot)
    for p in range(1, max_p + 1):
        term = term * dot * (2.0 * gamma / p)
        out = out + term
    return out * torch.exp(torch.tensor(-2.0 * gamma, dtype=e.dtype))


@MODELS.register_module()
class CC(LevelwiseMethod):
    """Correlation congruence between linear embeddings of the penultimate features (module
    docstring).

    Args:
        embed_dim (int): width of the two linear embeddings. Default 128 (RepDistiller's
            ``--feat_dim``; torchdistill's sample config's ``out_features``).
        kernel (str): 'repdistiller' (default; the code behind the CRD paper's CC numbers),
            'gaussian' (the paper's Taylor-expanded Gaussian RBF correlation matrix,
            torchdistill's ``CCKDLoss``) or 'bilinear' (torchdistill's inner-product matrix).
        gamma (float): the Gaussian kernel's gamma. Default 0.4 (torchdistill's sample config;
            the paper's). Used by 'gaussian' only.
        max_p (int): the order P of the Taylor expansion. Default 2 (the same sources). Used
            by 'gaussian' only.
        share_levels (bool): one pair of embeddings for every level (needs equal widths).
            Default False.
        level_reduction (str): 'sum' (default) or 'mean' over several levels.
        init_cfg (dict | list[dict], optional): initialisation of the embeddings. Default None
            (PyTorch's ``nn.Linear`` initialisation, as both authors' codes).

    Block: penultimate features on both sides, the same batch, widths free: ``'neck'`` of an
    mmpretrain classifier (N, C), or any (N, ...) tensor (flattened). Returns ``loss_cc``.

    References:
        Paper: Peng et al., "Correlation Congruence for Knowledge Distillation", ICCV 2019
            (arXiv 1904.01802).
        Code: https://github.com/HobbitLong/RepDistiller (``distiller_zoo/CC.py``,
            ``models/util.py`` ``LinearEmbed``, ``train_student.py``; b84f547) and
            https://github.com/yoshitomo-matsubara/torchdistill (``CCKDLoss`` in
            ``torchdistill/losses/mid_level.py``, ``Linear4CCKD`` in
            ``torchdistill/models/wrapper.py``; 3e4373c).
    """

    def __init__(self, embed_dim: PositiveInt = 128,
                 kernel: Literal['repdistiller', 'gaussian', 'bilinear'] = 'repdistiller',
                 gamma: PositiveFloat = 0.4, max_p: NonNegativeInt = 2,
                 share_levels: bool = False, level_reduction: Literal['sum', 'mean'] = 'sum',
                 init_cfg: InitCfg = None):
        super().__init__(share_levels=share_levels, level_reduction=level_reduction,
                         init_cfg=init_cfg)
        self.embed_dim, self.kernel = int(embed_dim), kernel
        self.gamma, self.max_p = float(gamma), int(max_p)

    def build_level(self, student, teacher):
        for side, v in (('student', student), ('teacher', teacher)):
            if v.dim() < 2:
                raise ValueError(f'CC needs features (N, D) or (N, ...); the {side} gives '
                                 f'{tuple(v.shape)}.')
        if student.shape[0] != teacher.shape[0]:
            raise ValueError(f'CC relates the samples of one batch: student batch '
                             f'{student.shape[0]}, teacher batch {teacher.shape[0]}.')
        d_s, d_t = student[0].numel(), teacher[0].numel()
        return nn.ModuleDict(dict(
            student=nn.Linear(d_s, self.embed_dim).to(device=student.device),
            teacher=nn.Linear(d_t, self.embed_dim).to(device=teacher.device)))

    def _correlation(self, e: torch.Tensor) -> torch.Tensor:
        if self.kernel == 'bilinear':
            return e @ e.t()
        return gaussian_correlation(e, self.gamma, self.max_p)

    def level_loss(self, student, teacher, connector, data_samples=None
                   ) -> Dict[str, torch.Tensor]:
        n = student.shape[0]
        e_s = connector['student'](student.reshape(n, -1))
        e_t = connector['teacher'](teacher.detach().reshape(n, -1))
        dtype = torch.promote_types(e_s.dtype, torch.float32)  # float32 under AMP
        e_s, e_t = e_s.to(dtype), e_t.to(dtype)
        if self.kernel == 'repdistiller':
            if n < 2:
                return dict(loss_cc=(e_s - e_t).sum() * 0.0)
            delta = (e_s - e_t).abs()
            return dict(loss_cc=(delta[:-1] * delta[1:]).sum(1).mean())
        diff = self._correlation(e_s) - self._correlation(e_t)
        # vector_norm: a zero subgradient where the matrices agree (a sqrt would give NaN)
        return dict(loss_cc=torch.linalg.vector_norm(diff) / n ** 2)
