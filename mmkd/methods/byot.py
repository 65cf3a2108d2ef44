"""BYOT: self-distillation from a network's deepest classifier into its shallow exits.

Zhang, Song, Gao, Chen, Bao, Ma, "Be Your Own Teacher: Improve the Performance of Convolutional
Neural Networks via Self Distillation", ICCV 2019 (arXiv 1905.08094). The paper's code was
announced but not released; MMRazor's BYOT README links the unofficial reimplementation
luanyunteng/pytorch-be-your-own-teacher (``train.py`` and ``models/resnet.py``, commit 8045079),
whose ResNet-18 reaches the paper's CIFAR-100 numbers. Its train loop is the formulation here.

Each shallow exit i (an :class:`mmkd.AuxExit` branch insert on an intermediate stage) is one
block whose teacher points are the student's own deepest values (``self:`` points, detached)::

    exit logits    z_i (N, K)     student point 'kd_inserts.exit<i>'
    exit features  f_i (N, C)     student point 'kd_inserts.exit<i>.fc@input' (pooled)
    deepest logits z   (N, K)     teacher point 'self:head.fc'
    deepest feats  f   (N, C)     teacher point 'self:head.fc@input' (pooled)
    labels y (N,) from the data samples

    loss_ce      = (1 - alpha) * CE(z_i, y)                                  mean over N
    loss_kd      = alpha * T^2 * KL(softmax(z / T) || softmax(z_i / T))      mean over N
    loss_feature = feature_weight * sum_{n, c} (f_i - f)^2 * [f_i > 0 or f > 0]

with z and f detached (the deepest classifier is the teacher; it learns from the labels only).
The deepest classifier's own cross-entropy is the student's task loss: the authors weight it
by ``(1 - alpha)`` too, so the configs set the student head's ``loss_weight=1 - alpha``.

Defaults are the reimplementation's (``train.py``: ``--alpha 0.1 --temperature 3 --beta
1e-6``; the paper gives no values). Where the paper and that code differ, and what we do:

- KL vs cross-entropy. The paper's term is KL(q^i, q^C); the code computes the soft
  cross-entropy ``-mean(sum(softmax(z/T) * log_softmax(z_i/T)))``. They differ by the
  entropy of the (detached) deepest softmax, a constant for the exit: the same gradient. We
  return the KL (0 when the exit agrees with the deepest); the logged value is lower than the
  code's by ``alpha * T^2 * H(softmax(z/T))``.
- T^2. The code multiplies the soft term by T^2 (Hinton's scaling); the paper does not say.
- The hint. The paper writes ``lambda * ||F_i - F_C||^2`` between "feature maps"; the code
  compares the globally pooled features (N, C, 1, 1), summed (not averaged) over the batch
  and the channels, and only where either is positive (``feature_mask``; on post-ReLU pooled
  features, which are never negative, the mask changes nothing). ``feature_reduction='sum'``
  is the code's; ``'batchmean'`` divides by N, so the weight does not depend on the batch.
- Detaching. The code detaches the deepest logits and features; the paper does not say.
- The bottleneck's layers are the code's (see :mod:`mmkd.models.aux_exit`).

MMRazor's BYOT config (``configs/distill/mmcls/byot``) differs again: an attention connector
with separable convolutions instead of the bottleneck, alpha 0.3 (CE 0.7, KL 0.3, T 3), an L2
hint weight 0.03 on the first two exits and 0 on the third, and the deepest CE at weight 1.
"""
from typing import Annotated, Dict, Literal

import torch
import torch.nn.functional as F

from ..losses import kl_from_log_probs
from ..registry import MODELS
from ..utils.arguments import InitCfg, Interval, NonNegativeFloat, PositiveFloat
from .base import BaseDistillMethod, gt_labels

Fraction = Annotated[float, Interval(ge=0, le=1)]


def _split(value, side: str):
    """(logits, features or None) from a block's value: a tensor, or [logits, features]."""
    if isinstance(value, torch.Tensor):
        return value, None
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(
            isinstance(v, torch.Tensor) for v in value):
        return value[0], value[1]
    raise ValueError(f'BYOT: the {side} points must be the logits (N, K) or [logits (N, K), '
                     'features (N, C, ...)], e.g. student=[\'kd_inserts.exit1\', '
                     '\'kd_inserts.exit1.fc@input\'], teacher=[\'self:head.fc\', '
                     f'\'self:head.fc@input\'], got {type(value).__name__}'
                     f'{" of length %d" % len(value) if isinstance(value, (list, tuple)) else ""}.')


def masked_feature_l2(student: torch.Tensor, teacher: torch.Tensor,
                      mask: bool = True) -> torch.Tensor:
    """``sum (s - t)^2``, over every element, where ``s > 0 or t > 0`` when ``mask`` (the
    reimplementation's ``feature_loss_function``)."""
    diff = (student - teacher) ** 2
    if mask:
        diff = diff * ((student > 0) | (teacher > 0)).to(diff.dtype)
    return diff.sum()


@MODELS.register_module()
class BYOT(BaseDistillMethod):
    """BYOT's loss for one shallow exit (module docstring).

    Args:
        alpha (float): in [0, 1]; the exit's label CE is weighted ``1 - alpha`` and its KL to
            the deepest classifier ``alpha``. Default 0.1 (the reimplementation's).
        tau (float): temperature T of the KL (multiplied by T^2). Default 3.0.
        feature_weight (float): weight of the feature hint (the code's ``beta``). Default
            1e-6 (with its summed reduction and batch 128).
        feature_mask (bool): compare the features only where either is positive (the code's).
            Default True.
        feature_reduction (str): ``'sum'`` over batch and elements (the code's, default) or
            ``'batchmean'`` (the sum divided by N).

    Block: ``student=['kd_inserts.exit1', 'kd_inserts.exit1.fc@input']``,
    ``teacher=['self:head.fc', 'self:head.fc@input']`` (or the logits alone on both sides,
    with no hint); needs ``gt_label``. Returns ``loss_ce``, ``loss_kd`` and, with features,
    ``loss_feature``. The teacher values are detached here too.

    References:
        Paper: Zhang, Song, Gao, Chen, Bao, Ma, "Be Your Own Teacher: Improve the Performance
            of Convolutional Neural Networks via Self Distillation", ICCV 2019
            (arXiv 1905.08094).
        Code: unofficial, https://github.com/luanyunteng/pytorch-be-your-own-teacher
            (``train.py``, ``models/resnet.py``).
    """

    def __init__(self, alpha: Fraction = 0.1, tau: PositiveFloat = 3.0,
                 feature_weight: NonNegativeFloat = 1e-6, feature_mask: bool = True,
                 feature_reduction: Literal['sum', 'batchmean'] = 'sum',
                 init_cfg: InitCfg = None):
        super().__init__(init_cfg=init_cfg)
        self.alpha, self.tau = float(alpha), float(tau)
        self.feature_weight = float(feature_weight)
        self.feature_mask = feature_mask
        self.feature_reduction = feature_reduction

    def build(self, student, teacher) -> None:
        (s, sf), (t, tf) = _split(student, 'student'), _split(teacher, 'teacher')
        for side, v in (('student', s), ('teacher', t)):
            if v.dim() != 2:
                raise ValueError(f'BYOT: the {side} logits must be (N, K), got '
                                 f'{tuple(v.shape)}; the first point is the classifier '
                                 "(e.g. 'kd_inserts.exit1', 'self:head.fc').")
        if s.shape[1] != t.shape[1]:
            raise ValueError(f'BYOT: the exit gives {s.shape[1]} classes and the deepest '
                             f'classifier {t.shape[1]}; give the AuxExit num_classes='
                             f'{t.shape[1]}.')
        if (sf is None) != (tf is None):
            raise ValueError('BYOT: give the features on both sides or on neither.')
        if sf is not None and sf.flatten(1).shape[1:] != tf.flatten(1).shape[1:]:
            raise ValueError(f'BYOT: the exit\'s features {tuple(sf.shape)} and the deepest '
                             f'features {tuple(tf.shape)} differ in size; record the pooled '
                             "features on both sides ('kd_inserts.exit1.fc@input', "
                             "'self:head.fc@input').")
        super().build(student, teacher)

    def forward(self, student, teacher, data_samples=None) -> Dict[str, torch.Tensor]:
        (s, sf), (t, tf) = _split(student, 'student'), _split(teacher, 'teacher')
        dtype = torch.promote_types(s.dtype, torch.float32)  # AMP: losses in float32
        s, t = s.to(dtype), t.detach().to(dtype)
        labels = gt_labels(data_samples, s.shape[0], s.device, 'BYOT')
        losses = dict(
            loss_ce=(1 - self.alpha) * F.cross_entropy(s, labels),
            loss_kd=self.alpha * self.tau ** 2 * kl_from_log_probs(
                F.log_softmax(t / self.tau, dim=1), F.log_softmax(s / self.tau, dim=1)).mean())
        if sf is not None:
            sf, tf = sf.to(dtype).flatten(1), tf.detach().to(dtype).flatten(1)
            hint = masked_feature_l2(sf, tf, self.feature_mask)
            if self.feature_reduction == 'batchmean':
                hint = hint / sf.shape[0]
            losses['loss_feature'] = self.feature_weight * hint
        return losses
