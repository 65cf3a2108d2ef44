"""Decoupled logit distillation: DKD, and RLD, which refines it for a teacher that is wrong.

DKD -- "Decoupled Knowledge Distillation" (Zhao, Cui, Song, Qiu, Liang, CVPR 2022; authors' code
megvii-research/mdistiller, ``distillers/DKD.py``). Hinton's KD splits exactly into a part about
the target class and a part about the other classes (the paper's Eq. 7)::

    logits z (N, C), label y, p = softmax(z / T)
    b     = [p_y, 1 - p_y]                          (N, 2)    target vs the rest
    p_hat = softmax over the classes c != y of z/T  (N, C-1)  how the rest is shared
    TCKD = KL(b^T || b^S),  NCKD = KL(p_hat^T || p_hat^S)
    KL(p^T || p^S) = TCKD + (1 - p^T_y) * NCKD

DKD drops the teacher-confidence factor in front of NCKD and weighs the parts freely::

    loss = T^2 * (alpha * TCKD + beta * NCKD), averaged over the N samples

Defaults are the authors' CIFAR-100 ones (alpha 1, beta 8, T 4; their configs use beta 2 for
ResNet-56 / ResNet-110 teachers and 6 for WRN-40-2; ImageNet R34 -> R18 beta 0.5, T 1). The
authors warm the whole loss up linearly, ``min(epoch / 20, 1)`` (1 epoch on ImageNet): give
the block ``loss_weight=dict(type='LinearWarmup', value=1.0, warmup=20, by_epoch=True)``
(:mod:`mmkd.distillers.loss_weights`).

RLD -- "Knowledge Distillation with Refined Logits" (Sun et al., arXiv 2408.07703; authors'
code zju-SWJ/RLD, ``distillers/RLD.py``). The teacher may be wrong, so DKD's two parts are
refined::

    SCD (sample confidence):  KL([p^T_m, 1 - p^T_m] || [p^S_y, 1 - p^S_y]) at scd_tau,
                              m = argmax of the teacher (not the label)
    MCD (masked correlation): remove every class the teacher ranks at least as high as the
                              true class (the true class included) from both models; KL of
                              the softmaxes over the remaining classes at tau
    loss = alpha * scd_tau^2 * SCD + beta * tau^2 * MCD

When the teacher's argmax is the label (and no class ties with it) and ``scd_tau == tau``, RLD
*is* DKD. The authors' code defaults to scd_tau 1 with tau 4, but their README trains RLD with
``--same-t`` (scd_tau = tau): ``scd_tau=None`` (default) follows the README, a number
the code's default. Same defaults and warm-up as DKD (ImageNet: beta 0.5, tau 1, warm-up 1).

Both methods take the block's classification logits (N, C) and the labels from the data
samples (``gt_label``), return their two parts as separate losses (``loss_tckd`` /
``loss_nckd``, ``loss_scd`` / ``loss_mcd``), and accept ``logit_standardization=True``
(:func:`~mmkd.losses.standardize_logits` on both models' logits first, as the logit
standardisation authors apply it to DKD: with their ``--logit-stand --base-temp 2 --kd-weight
9``, alpha and beta are multiplied by 9 and T is 2).

Degenerate class counts stay finite: with C = 2 the rest is one class and NCKD = 0; with C = 1
there is no rest at all and both parts are 0. RLD's MCD is 0 for a sample whose every class is
masked (the teacher ranks the true class last).
"""
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F

from ..losses import kl_from_log_probs, standardize_logits
from ..registry import MODELS
from ..utils.arguments import InitCfg, NonNegativeFloat, PositiveFloat
from .base import BaseDistillMethod, gt_labels


def _binary_log_probs(z: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """log [p_index, 1 - p_index] of softmax(z) without forming 1 - p: (N, C), (N,) -> (N, 2).
    Needs C >= 2."""
    lse = torch.logsumexp(z, dim=1)
    onehot = F.one_hot(index, z.shape[1]).bool()
    target = z.gather(1, index[:, None]).squeeze(1)
    rest = torch.logsumexp(z.masked_fill(onehot, float('-inf')), dim=1)
    return torch.stack([target - lse, rest - lse], dim=1)


def decoupled_kl(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor,
                 tau: float = 1.0) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """DKD's parts per sample, without the tau^2 factor: ``(TCKD, NCKD, 1 - p^T_y)``, each (N,).

    ``KL(softmax(t / tau) || softmax(s / tau)) = TCKD + (1 - p^T_y) * NCKD`` exactly (module
    docstring). With C = 1 all three are zeros; with C = 2, NCKD is zeros.
    """
    n, c = student.shape
    s, t = student / tau, teacher / tau
    if c < 2:
        zero = (s * 0).sum(dim=1)
        return zero, zero, zero.detach()
    log_b_s, log_b_t = _binary_log_probs(s, labels), _binary_log_probs(t, labels)
    tckd = kl_from_log_probs(log_b_t, log_b_s)
    # The non-target logits, gathered: an exact softmax over the C - 1 other classes.
    rest = ~F.one_hot(labels, c).bool()
    s_rest, t_rest = s[rest].view(n, c - 1), t[rest].view(n, c - 1)
    nckd = kl_from_log_probs(F.log_softmax(t_rest, dim=1), F.log_softmax(s_rest, dim=1))
    return tckd, nckd, log_b_t[:, 1].exp()


def _check_logits(name: str, student, teacher) -> None:
    for side, v in (('student', student), ('teacher', teacher)):
        if not isinstance(v, torch.Tensor) or v.dim() != 2:
            raise ValueError(f'{name}: the {side} point must give classification logits '
                             f'(N, C) (e.g. "head.fc"), got {type(v).__name__}'
                             f'{tuple(v.shape) if isinstance(v, torch.Tensor) else ""}.')
    if student.shape != teacher.shape:
        raise ValueError(f'{name} needs the same number of classes, got student '
                         f'{tuple(student.shape)} and teacher {tuple(teacher.shape)}.')


class _DecoupledLogits(BaseDistillMethod):
    """Shared by DKD and RLD: checks, float32 (AMP), standardisation, labels."""
    #: Its teacher values are logits: a cached teacher may store them as top-K.
    reads_teacher_logits = True

    def __init__(self, alpha: NonNegativeFloat, beta: NonNegativeFloat, tau: PositiveFloat,
                 logit_standardization: bool, init_cfg: InitCfg = None):
        super().__init__(init_cfg=init_cfg)
        self.alpha, self.beta, self.tau = float(alpha), float(beta), float(tau)
        self.logit_standardization = logit_standardization

    def build(self, student, teacher) -> None:
        _check_logits(type(self).__name__, student, teacher)
        super().build(student, teacher)

    def prepare(self, student, teacher, data_samples):
        dtype = torch.promote_types(student.dtype, torch.float32)
        s, t = student.to(dtype), teacher.to(dtype)
        if self.logit_standardization:
            s, t = standardize_logits(s), standardize_logits(t)
        labels = gt_labels(data_samples, s.shape[0], s.device, type(self).__name__)
        if labels.min() < 0 or labels.max() >= s.shape[1]:
            raise ValueError(f'{type(self).__name__}: labels {labels.tolist()} outside the '
                             f'{s.shape[1]} classes of the logits.')
        return s, t, labels


@MODELS.register_module()
class DKD(_DecoupledLogits):
    """Decoupled KD: ``tau^2 * (alpha * TCKD + beta * NCKD)`` (module docstring).

    Args:
        alpha (float): weight of TCKD. Default 1.0.
        beta (float): weight of NCKD. Default 8.0 (CIFAR-100; 2 for ResNet-56/110 teachers, 6
            for WRN-40-2, 0.5 on ImageNet).
        tau (float): temperature. Default 4.0 (CIFAR-100; 1 on ImageNet).
        logit_standardization (bool): z-score both logits first. Default False.

    Block: ``student='head.fc'``, ``teacher='head.fc'`` (logits (N, C)); needs ``gt_label``.
    Returns ``loss_tckd`` and ``loss_nckd`` (their sum is DKD's loss).

    References:
        Paper: Zhao, Cui, Song, Qiu, Liang, "Decoupled Knowledge Distillation", CVPR 2022
            (arXiv 2203.08679).
        Code: the authors', https://github.com/megvii-research/mdistiller
            (``distillers/DKD.py``).
    """

    def __init__(self, alpha: NonNegativeFloat = 1.0, beta: NonNegativeFloat = 8.0,
                 tau: PositiveFloat = 4.0, logit_standardization: bool = False,
                 init_cfg: InitCfg = None):
        super().__init__(alpha, beta, tau, logit_standardization, init_cfg=init_cfg)

    def forward(self, student, teacher, data_samples=None) -> Dict[str, torch.Tensor]:
        s, t, labels = self.prepare(student, teacher, data_samples)
        tckd, nckd, _ = decoupled_kl(s, t.detach(), labels, self.tau)
        scale = self.tau ** 2
        return dict(loss_tckd=self.alpha * scale * tckd.mean(),
                    loss_nckd=self.beta * scale * nckd.mean())


@MODELS.register_module()
class RLD(_DecoupledLogits):
    """Refined logit distillation: ``alpha * scd_tau^2 * SCD + beta * tau^2 * MCD`` (module
    docstring).

    Args:
        alpha (float): weight of SCD. Default 1.0.
        beta (float): weight of MCD. Default 8.0 (the authors' CIFAR-100 value for every pair;
            0.5 on ImageNet).
        tau (float): temperature of MCD. Default 4.0 (1 on ImageNet).
        scd_tau (float, optional): temperature of SCD; None (default) = ``tau``, the authors'
            README (``--same-t``); their code's default is 1.0.
        logit_standardization (bool): z-score both logits first. Default False.

    Block: as :class:`DKD`: logits (N, C) on both sides and the data samples' ``gt_label``.
    Returns ``loss_scd`` and ``loss_mcd``.

    References:
        Paper: Sun, Chen, Lyu, Chen, Chen, Wang, "Knowledge Distillation with Refined Logits"
            (arXiv 2408.07703).
        Code: the authors', https://github.com/zju-SWJ/RLD (``distillers/RLD.py``).
    """

    def __init__(self, alpha: NonNegativeFloat = 1.0, beta: NonNegativeFloat = 8.0,
                 tau: PositiveFloat = 4.0, scd_tau: Optional[PositiveFloat] = None,
                 logit_standardization: bool = False, init_cfg: InitCfg = None):
        super().__init__(alpha, beta, tau, logit_standardization, init_cfg=init_cfg)
        self.scd_tau = float(scd_tau) if scd_tau is not None else self.tau

    def forward(self, student, teacher, data_samples=None) -> Dict[str, torch.Tensor]:
        s, t, labels = self.prepare(student, teacher, data_samples)
        t = t.detach()
        n, c = s.shape
        if c < 2:
            zero = (s * 0).sum()
            return dict(loss_scd=zero, loss_mcd=zero)
        # SCD: the student's label-vs-rest against the teacher's own-top-class-vs-rest.
        log_b_s = _binary_log_probs(s / self.scd_tau, labels)
        log_b_t = _binary_log_probs(t / self.scd_tau, t.argmax(dim=1))
        scd = kl_from_log_probs(log_b_t, log_b_s)
        # MCD: classes the teacher ranks >= the true class (the true class included) are
        # removed from both; a row with nothing left has no MCD.
        masked = t >= t.gather(1, labels[:, None])
        empty = masked.all(dim=1)
        masked = masked & ~empty[:, None]
        log_q = F.log_softmax((s / self.tau).masked_fill(masked, float('-inf')), dim=1)
        log_p = F.log_softmax((t / self.tau).masked_fill(masked, float('-inf')), dim=1)
        # Removed classes have p = 0 and contribute 0 (their -inf log-probabilities zeroed, so
        # no 0 * inf is formed, forward or backward).
        diff = (log_p - log_q).masked_fill(masked, 0.0)
        mcd = (log_p.exp() * diff).sum(dim=1) * (~empty).to(s.dtype)
        return dict(loss_scd=self.alpha * self.scd_tau ** 2 * scd.mean(),
                    loss_mcd=self.beta * self.tau ** 2 * mcd.mean())
