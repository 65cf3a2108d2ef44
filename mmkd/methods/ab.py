"""AB: knowledge transfer via distillation of activation boundaries (Heo, Lee, Yun, Choi,
AAAI 2019).

The student learns *where* each teacher neuron is active (its activation boundary), not the
response itself: on pre-ReLU features, a hinge-like ("alternative") squared loss pushes each
student value above ``+margin`` where the teacher's is positive and below ``-margin`` where it
is not::

    levels i = 0..L-1   s_i (N, Cs_i, H_i, W_i) pre-ReLU student map -> connector -> (N, Ct_i, H, W)
                        t_i (N, Ct_i, H_i, W_i) pre-ReLU teacher map (no gradient)
    l_i = sum over all elements of
          (s + m)^2 * [s > -m and t <= 0]  +  (s - m)^2 * [s <= m and t > 0]       (m = margin)
    loss = sum_i w_i * l_i / N * 3 / 1000,   w_i = 2 ** (i - L + 1)   (the deepest level 1,
                                                                       each shallower one half)

The connector of a level is the identity where the student map already has the teacher's
channels and height, else RepDistiller's ``ConvReg`` without its ReLU (conv sized to map the
student onto the teacher, then BatchNorm): ``models/util.py``, ``Connector``.

Stages. AB is an *initialisation*: RepDistiller (``train_student.py`` with ``helper/pretrain.py``
``init``) first trains the student's feature layers and the connectors on the AB loss alone for
``init_epochs = 30`` epochs (their own SGD, lr 0.05, the student in eval mode), then drops the
connectors and trains the student with the cross-entropy alone (``-a 0 -b 1``; the train loop
sets the AB term to 0) for the 240 epochs of the recipe. In mmkd the stage is a schedule of the
block's loss weight, MMEngine's iteration/epoch counter deciding the boundary::

    loss_weight=dict(type='Step', value=1.0, milestones=[30], gamma=0.0, by_epoch=True)

(on for epochs 1..30, off after). What differs from the authors: one run with one optimiser
and one LR schedule, so the student's task loss stays on during the first stage (the
distiller has no schedule for the student's own loss weight) and the student's BatchNorm
layers are in training mode; after the boundary the connectors receive zero gradients (only
weight decay moves them; they are unused). Both codes (RepDistiller, MMRazor) are otherwise
followed exactly; MMRazor's ``ABLoss`` (``mmrazor/models/losses/ab_loss.py``) is the same
per-level loss with the level weights given per loss in its config (1, 0.5, 0.25, 0.125), and
its configs run the stage as a separate "pretrain" run whose checkpoint the second run loads.

Record points: the authors' features are *pre-ReLU* (``preact=True``): the residual sum before
the block's final ReLU (ResNet), or the next block's ``bn1`` output (WRN). Record maps whose
values are not overwritten by an in-place ReLU afterwards (a ``bn2`` output of a ResNet block,
or the WRN's ``layer{k}.0.bn1``); see configs/ab/README.md for the points used per network.
"""
from typing import Dict, Optional, Sequence

import torch
import torch.nn as nn

from ..registry import MODELS
from ..utils.arguments import NonNegativeFloat, PositiveFloat
from .base import LevelwiseMethod
from .feature_mse import ConvReg


def ab_level_loss(source: torch.Tensor, target: torch.Tensor, margin: float) -> torch.Tensor:
    """The alternative (hinge-like squared) activation-boundary loss of one level, summed over
    every element (module docstring); ``target`` is used as given (detach it)."""
    neg = ((source > -margin) & (target <= 0)).to(source.dtype)
    pos = ((source <= margin) & (target > 0)).to(source.dtype)
    return ((source + margin).pow(2) * neg + (source - margin).pow(2) * pos).sum()


@MODELS.register_module()
class AB(LevelwiseMethod):
    """Activation-boundary distillation on pre-ReLU features (module docstring), usually run
    as a first stage with a ``Step`` loss-weight schedule.

    Args:
        margin (float): the margin m of the alternative loss: the student value is pushed
            beyond +m (teacher active) or below -m (teacher inactive). Default 1.0 (the
            paper's, RepDistiller's ``ABLoss(margin=1.0)``, MMRazor's).
        level_weights (sequence of float, optional): one weight per level, shallow to deep.
            Default None: RepDistiller's ``2 ** (i - L + 1)`` (the deepest level 1, each
            shallower one half of the next), computed from the number of levels recorded.
        scale (float): the factor of the sum: ``loss = sum_i w_i l_i / N * scale``. Default
            0.003 (RepDistiller's and MMRazor's ``/ 1000 * 3``).

    Block: pre-ReLU maps (N, C, H, W) on both sides, one or several levels (a list of points,
    shallow to deep), the same batch; the student map as large as the teacher's, or half or
    twice its size (the connector's conv). Returns ``loss_ab`` (the authors' loss: the sum
    over levels) and the diagnostic ``ab_agreement``: the fraction of elements where the
    (connected) student and the teacher are on the same side of 0, averaged over levels.

    References:
        Paper: Heo, Lee, Yun, Choi, "Knowledge Transfer via Distillation of Activation
            Boundaries Formed by Hidden Neurons", AAAI 2019 (arXiv 1811.03233).
        Code: https://github.com/HobbitLong/RepDistiller (``distiller_zoo/AB.py``,
            ``models/util.py`` ``Connector``/``ConvReg``, ``helper/pretrain.py``; commit
            b84f547), https://github.com/open-mmlab/mmrazor
            (``mmrazor/models/losses/ab_loss.py``, commit 0fe347f); the authors' own,
            https://github.com/bhheo/AB_distillation.
    """

    def __init__(self, margin: NonNegativeFloat = 1.0,
                 level_weights: Optional[Sequence[NonNegativeFloat]] = None,
                 scale: PositiveFloat = 0.003, **kwargs):
        kwargs.setdefault('level_reduction', 'sum')
        super().__init__(**kwargs)
        self.margin = float(margin)
        self.level_weights = None if level_weights is None else [float(w) for w in
                                                                 level_weights]
        self.scale = float(scale)

    def build(self, student, teacher) -> None:
        pairs = self._pairs(student, teacher)
        if self.level_weights is not None and len(self.level_weights) != len(pairs):
            raise ValueError(f'AB: {len(self.level_weights)} level_weights for {len(pairs)} '
                             'recorded levels; give one per level (shallow to deep).')
        super().build(student, teacher)

    def build_level(self, student, teacher) -> Optional[nn.Module]:
        for side, v in (('student', student), ('teacher', teacher)):
            if v.dim() != 4:
                raise ValueError(f'AB needs pre-ReLU feature maps (N, C, H, W); the {side} '
                                 f'gives {tuple(v.shape)}.')
        if student.shape[1] == teacher.shape[1] and student.shape[2] == teacher.shape[2]:
            return None  # RepDistiller: nn.Sequential() where channels and height match
        return ConvReg(student.shape, teacher.shape, relu=False)

    def weights(self, levels: int):
        if self.level_weights is not None:
            return self.level_weights
        return [2.0 ** (i - levels + 1) for i in range(levels)]

    def forward(self, student, teacher, data_samples=None) -> Dict[str, torch.Tensor]:
        pairs = self._pairs(student, teacher)
        weights = self.weights(len(pairs))
        loss, agreement = 0.0, 0.0
        for i, ((s, t), w) in enumerate(zip(pairs, weights)):
            conn = self.connectors[0 if self.share_levels else i]
            g_s = conn(s)
            dtype = torch.promote_types(g_s.dtype, torch.float32)  # a sum: float32 under AMP
            g_s, g_t = g_s.to(dtype), t.detach().to(dtype)
            loss = loss + w * ab_level_loss(g_s, g_t, self.margin) / s.shape[0]
            agreement = agreement + ((g_s.detach() > 0) == (g_t > 0)).float().mean()
        if self.level_reduction == 'mean':  # the authors sum the levels ('sum', the default)
            loss = loss / len(pairs)
        return dict(loss_ab=loss * self.scale, ab_agreement=agreement / len(pairs))
