"""FSP: the flow of solution procedure (Yim, Joo, Bae, Kim, CVPR 2017).

The student copies the teacher's FSP matrices: the Gram matrices between the feature maps of
two consecutive record points, i.e. how one stage transforms the features of the one before::

    record points   f_0, f_1, ..., f_K   on each side (a tuple of K + 1 >= 2 maps, in order;
                    f_k (N, C_k, H_k, W_k)); pair k = (f_k, f_{k+1}), k = 0 .. K - 1
    pooling         the larger map of a pair is adaptively pooled (average; 'max' optional) to
                    the smaller one's (min(H_k, H_{k+1}), min(W_k, W_{k+1})), HW positions
    FSP matrix      G_k[n, a, b] = 1/HW sum_hw f_{k+1}[n, a, hw] * f_k[n, b, hw]
                    (N, C_{k+1}, C_k)
    loss            sum over pairs k of mean over (n, a, b) of (G_k^S - G_k^T)^2

The student's and the teacher's matrices of a pair must have the same shape: the authors'
code requires equal channel numbers at every record point (RepDistiller raises 'num of
channels not equal'), and so does this method by default (the error names the pair). With
``connector='conv1x1'`` a 1x1 convolution (with bias, PyTorch's default initialisation) maps
each student point whose channels differ to the teacher's channels before the Gram matrix; it
is not in the paper or the authors' code and is trained with the student (the digits demo's
quarter-width teacher and sixteenth-width student need it). The teacher side carries no
gradient.

Followed: RepDistiller's ``distiller_zoo/FSP.py`` (HobbitLong/RepDistiller b84f547), whose
CIFAR-100 numbers (CRD paper, Table 1) users compare with: average pooling of the larger map
and the per-pair mean squared difference, summed over pairs. RepDistiller pools to
``(t_H, t_H)`` (square, from the heights); here ``(min H, min W)``, the same on the square
maps of every CIFAR/ImageNet network. torchdistill's ``FSPLoss`` (3e4373c) pools with max
pooling (``pool='max'`` here) and reduces differently (per pair, the L2 norm over the first
matrix index summed, divided by the batch), a constant-free rescaling not offered here.

Stages. In the paper and in RepDistiller FSP is a first stage only: RepDistiller's
``train_student.py`` calls ``init(...)`` (``helper/pretrain.py``) for 30 epochs
(``--init_epochs``) of the FSP loss alone (weight 1; the student in eval mode, i.e. BatchNorm
with its running statistics frozen, only ``get_feat_modules()`` trained, not the classifier),
then trains 240 epochs with the cross-entropy alone (its main loop's FSP term is 0, so the
``-b 50`` of its script has no effect). mmkd expresses the stage as a loss-weight schedule on
the block: ``loss_weight=dict(type='Step', value=1.0, milestones=[30], gamma=0.0,
by_epoch=True)`` (on in epochs 1..30, off after), with the run lengthened by 30 epochs and the
learning-rate milestones moved by 30 (configs/fsp/). The differences that remain: the
cross-entropy is on during the FSP stage, BatchNorm is in training mode and the classifier is
trained too, and the optimizer's momentum is not reset at the stage boundary.

Record points: RepDistiller uses ``feat[:-1]`` of its models: the stem output and the three
stage outputs (for WRN the stem is its first convolution and the last stage's output is taken
before the final BN + ReLU), i.e. in mmkd's CIFAR models ``('backbone.stem',
'backbone.layer1', 'backbone.layer2', 'backbone.layer3')``, three pairs.
"""
from typing import Dict, List, Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..registry import MODELS
from ..utils.arguments import InitCfg
from .base import BaseDistillMethod, flatten_levels


def fsp_matrix(first: torch.Tensor, second: torch.Tensor, pool: str = 'avg') -> torch.Tensor:
    """(N, C1, H1, W1), (N, C2, H2, W2) -> (N, C2, C1): the larger map adaptively pooled to
    the smaller one's size, then the spatial mean of the products (module docstring)."""
    size = (min(first.shape[2], second.shape[2]), min(first.shape[3], second.shape[3]))
    pool_fn = F.adaptive_avg_pool2d if pool == 'avg' else F.adaptive_max_pool2d
    if tuple(first.shape[2:]) != size:
        first = pool_fn(first, size)
    if tuple(second.shape[2:]) != size:
        second = pool_fn(second, size)
    first, second = first.flatten(2), second.flatten(2)
    return second @ first.transpose(1, 2) / first.shape[2]


@MODELS.register_module()
class FSP(BaseDistillMethod):
    """Flow of solution procedure: the Gram matrices between consecutive record points (module
    docstring).

    Args:
        pool (str): how the larger map of a pair is reduced to the smaller one's spatial size:
            'avg' (default; RepDistiller's ``adaptive_avg_pool2d``) or 'max' (torchdistill's
            ``FSPLoss``).
        connector (str): 'none' (default; the authors': every point must have the teacher's
            channel number, else an error naming the pair) or 'conv1x1' (a 1x1 convolution on
            each student point whose channels differ from the teacher's; not the authors').
        init_cfg (dict | list[dict], optional): initialisation of the connectors. Default
            None (PyTorch's).

    Block: a tuple of K + 1 >= 2 record points per side, in network order, maps (N, C, H, W);
    pair k is (point k, point k + 1). Returns ``loss_fsp`` (the sum over the K pairs).

    References:
        Paper: Yim, Joo, Bae, Kim, "A Gift from Knowledge Distillation: Fast Optimization,
            Network Minimization and Transfer Learning", CVPR 2017.
        Code: https://github.com/HobbitLong/RepDistiller (``distiller_zoo/FSP.py``,
            ``train_student.py``, ``helper/pretrain.py``; b84f547) and
            https://github.com/yoshitomo-matsubara/torchdistill (``FSPLoss`` in
            ``torchdistill/losses/mid_level.py``; 3e4373c).
    """

    def __init__(self, pool: Literal['avg', 'max'] = 'avg',
                 connector: Literal['none', 'conv1x1'] = 'none', init_cfg: InitCfg = None):
        super().__init__(init_cfg=init_cfg)
        self.pool = pool
        self.connector = connector
        self.connectors = nn.ModuleList()

    @staticmethod
    def _levels(student, teacher) -> List[tuple]:
        s, t = flatten_levels(student), flatten_levels(teacher)
        if len(s) != len(t):
            raise ValueError(f'FSP: the student gives {len(s)} record points but the teacher '
                             f'gives {len(t)}; record the same number on both sides.')
        if len(s) < 2:
            raise ValueError('FSP needs at least two record points per side (a tuple, e.g. '
                             "('backbone.layer1', 'backbone.layer2')): its matrices relate "
                             'consecutive points.')
        return list(zip(s, t))

    def build(self, student, teacher) -> None:
        levels = self._levels(student, teacher)
        for i, (s, t) in enumerate(levels):
            for side, v in (('student', s), ('teacher', t)):
                if v.dim() != 4:
                    raise ValueError(f'FSP needs feature maps (N, C, H, W); the {side} point '
                                     f'{i} gives {tuple(v.shape)}.')
            if s.shape[0] != t.shape[0]:
                raise ValueError(f'FSP: student batch {s.shape[0]}, teacher batch '
                                 f'{t.shape[0]} at point {i}.')
        if self.connector == 'none':
            for k in range(len(levels) - 1):
                (s0, t0), (s1, t1) = levels[k], levels[k + 1]
                if (s0.shape[1], s1.shape[1]) != (t0.shape[1], t1.shape[1]):
                    raise ValueError(
                        f'FSP pair {k} (points {k} and {k + 1}): the student has '
                        f'{s0.shape[1]} and {s1.shape[1]} channels, the teacher {t0.shape[1]} '
                        f'and {t1.shape[1]}; FSP matrices ({s1.shape[1]}x{s0.shape[1]} vs '
                        f'{t1.shape[1]}x{t0.shape[1]}) need equal channels, as in the '
                        "authors' code. Record points of equal widths, or set "
                        "connector='conv1x1' (not the authors').")
            self.connectors.extend(nn.Identity() for _ in levels)
        else:
            self.connectors.extend(
                nn.Identity() if s.shape[1] == t.shape[1] else
                nn.Conv2d(s.shape[1], t.shape[1], 1).to(device=s.device)
                for s, t in levels)
        super().build(student, teacher)

    def forward(self, student, teacher, data_samples=None) -> Dict[str, torch.Tensor]:
        levels = self._levels(student, teacher)
        dtype = torch.promote_types(levels[0][0].dtype, torch.float32)  # float32 under AMP
        s = [conn(x).to(dtype) for conn, (x, _) in zip(self.connectors, levels)]
        t = [x.detach().to(dtype) for _, x in levels]
        loss = s[0].new_zeros(())
        for k in range(len(levels) - 1):
            g_s = fsp_matrix(s[k], s[k + 1], self.pool)
            g_t = fsp_matrix(t[k], t[k + 1], self.pool)
            loss = loss + (g_s - g_t).pow(2).mean()
        return dict(loss_fsp=loss)
