"""Logit distillation from several teachers at once (an ensemble of teachers).

Data flow (K teachers, one block)::

    student logits s (N, C[, H, W])  +  teacher logits [t_1 .. t_K], each (N, C[, H', W'])
      -> student map resized to the teachers' size (dense maps)
      -> combine (below) -> tau^2 * KL(teacher distribution || softmax(s / tau))

``combine`` is the choice users of other toolboxes argue about, so all three are here; with
weights w_k (default 1) and p_k = softmax(t_k / tau), q = softmax(s / tau):

* ``'mean_prob'``  (default): KL(sum_k w_k p_k / sum_k w_k || q): the student matches the
  averaged predictive distribution (the classic ensemble teacher, e.g. "Efficient knowledge
  distillation from an ensemble of teachers", Fukuda et al., 2017).
* ``'mean_logit'``: KL(softmax(sum_k w_k t_k / (tau sum_k w_k)) || q): logits averaged before
  the softmax (sharper where teachers agree, a geometric mean of the p_k up to normalisation).
* ``'sum_kl'``: sum_k w_k KL(p_k || q): one KD term per teacher, added (the weights are not
  normalised: two teachers with w = 1 give twice one teacher's loss; for the average, give
  w = 1/K).

With one teacher all three are Hinton's KD (:class:`LogitKD`) at the same temperature. The KL
is summed over classes and averaged over samples (and pixels), as in :class:`LogitKD`.
"""
from typing import Dict, Literal, Optional, Sequence

import torch
import torch.nn.functional as F

from ..losses import kl_from_log_probs
from ..registry import MODELS
from ..utils.arguments import InitCfg, LossName, NonNegativeFloat, PositiveFloat
from .base import BaseDistillMethod, flatten_levels, resize_like

Combine = Literal['mean_prob', 'mean_logit', 'sum_kl']


@MODELS.register_module()
class EnsembleKD(BaseDistillMethod):
    """KD from the logits of several teachers; the block's ``teacher`` lists one point per
    teacher (``teacher=['a:head.fc', 'b:head.fc']``).

    Args:
        combine (str): how the teachers' logits become one target: ``'mean_prob'`` (default:
            the weighted mean of their softmax probabilities), ``'mean_logit'`` (the weighted
            mean of their logits, then the softmax) or ``'sum_kl'`` (one KD term per teacher,
            weighted and summed); formulas in the module docstring.
        tau (float): temperature. Default 1.0.
        teacher_weights (sequence of float, optional): w_k, one per teacher point, in order,
            non-negative with a positive sum. Default: all 1.
        loss_name (str): key of the returned loss. Default 'loss_kd'.

    Block: ``student='head.fc'`` (logits (N, C), or maps (N, C, H, W), resized to the
    teachers' size) and ``teacher=['a:head.fc', 'b:head.fc']``, one point per teacher, each
    with the student's number of classes. Returns ``loss_kd``.

    References:
        Method: Hinton's KD (:class:`LogitKD`) from several teachers; ``'mean_prob'`` is the
            classic ensemble teacher (e.g. Fukuda et al., "Efficient Knowledge Distillation
            from an Ensemble of Teachers", 2017).
        Code: none followed; the three combinations are mmkd's.
    """
    #: Its teacher values are logits: a cached teacher may store them as top-K.
    reads_teacher_logits = True

    def __init__(self, combine: Combine = 'mean_prob', tau: PositiveFloat = 1.0,
                 teacher_weights: Optional[Sequence[NonNegativeFloat]] = None,
                 loss_name: LossName = 'loss_kd', init_cfg: InitCfg = None):
        super().__init__(init_cfg=init_cfg)
        if teacher_weights is not None:
            teacher_weights = [float(w) for w in teacher_weights]
            if sum(teacher_weights) <= 0:  # each is >= 0 (the argument schema)
                raise ValueError('EnsembleKD: teacher_weights must be non-negative with a '
                                 f'positive sum, got {teacher_weights}.')
        self.combine = combine
        self.tau = float(tau)
        self.teacher_weights = teacher_weights
        self.loss_name = loss_name

    def _weights(self, num_teachers: int):
        if self.teacher_weights is None:
            return [1.0] * num_teachers
        if len(self.teacher_weights) != num_teachers:
            raise ValueError(f'EnsembleKD: {len(self.teacher_weights)} teacher_weights for '
                             f'{num_teachers} teacher values; give one weight per teacher '
                             'point, in the order of the block\'s `teacher` list.')
        return self.teacher_weights

    def build(self, student, teacher) -> None:
        student, teachers = self._split(student, teacher)
        self._weights(len(teachers))
        shapes = {tuple(t.shape) for t in teachers}
        if len(shapes) > 1:
            raise ValueError(f'EnsembleKD: the teachers\' logits must have one shape, got '
                             f'{sorted(shapes)}.')
        if student.shape[1] != teachers[0].shape[1]:
            raise ValueError(f'EnsembleKD needs the same number of classes, got student '
                             f'{student.shape[1]} and teachers {teachers[0].shape[1]}.')
        super().build(student, teacher)

    @staticmethod
    def _split(student, teacher):
        students = flatten_levels(student)
        if len(students) != 1:
            raise ValueError(f'EnsembleKD: one student logit tensor, got {len(students)} '
                             'levels.')
        return students[0], flatten_levels(teacher)

    def forward(self, student, teacher, data_samples=None) -> Dict[str, torch.Tensor]:
        student, teachers = self._split(student, teacher)
        weights = self._weights(len(teachers))
        # Half-precision logits (AMP) are promoted: softmax differences underflow in fp16.
        dtype = torch.promote_types(student.dtype, torch.float32)
        teachers = [t.to(dtype) for t in teachers]
        student = resize_like(student, teachers[0]).to(dtype)
        log_q = F.log_softmax(student / self.tau, dim=1)
        total = sum(weights)
        if self.combine == 'sum_kl':
            loss = sum(w * _kl(F.log_softmax(t / self.tau, dim=1), log_q)
                       for w, t in zip(weights, teachers))
        elif self.combine == 'mean_logit':
            mean_logit = sum(w * t for w, t in zip(weights, teachers)) / total
            loss = _kl(F.log_softmax(mean_logit / self.tau, dim=1), log_q)
        else:  # mean_prob
            p = sum(w * F.softmax(t / self.tau, dim=1) for w, t in zip(weights, teachers))
            p = p / total
            loss = (torch.special.xlogy(p, p) - p * log_q).sum(dim=1).mean()
        return {self.loss_name: loss * self.tau ** 2}


def _kl(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) summed over dim 1, averaged over every other position."""
    return kl_from_log_probs(log_p, log_q).mean()
