"""MLKD -- "Multi-level Logit Distillation" (Jin, Wang, Lin, CVPR 2023; authors' code
Jin-Ying/Multi-Level-Logit-Distillation at 5ee473f, ``mdistiller/distillers/KD_ours.py``, built
on mdistiller).

The student and the teacher see a weak and a strong augmented view of every image; their
logits are compared at three levels, each at several temperatures::

    logits of the 2B images (N = 2B, C): rows [0, B) the weak views, [B, 2B) the strong ones
    (the batch made by mmkd.MultiViews + mmkd.multiview_collate, mmkd/datasets/
    transforms_multiview.py); s_w, s_s, t_w, t_s (B, C); P = softmax(z / T) (B, C)
    temperatures Ts = (tau, 3, 5, 2, 6)            tau: the authors' KD.TEMPERATURE (4 / 1)

    instance  KD(s, t, T)  = T^2 * mean_i KL(P_t,i || P_s,i)                      scalar
    batch     BC(s, t, T)  = ||P_t P_t^T - P_s P_s^T||_F^2 / B      (B x B)      scalar
    class     CC(s, t, T)  = ||P_t^T P_t - P_s^T P_s||_F^2 / C      (C x C)      scalar

    confidence masks from the teacher on the weak view, p = softmax(t_w) (T = 1):
      m = fraction of samples with max_c p <= median over the batch (np.percentile 50)
      k = fraction of classes with sum_i p[i, c] <= median over the classes

    loss_kd = instance_weight * (m * sum_Ts KD(s_w, t_w, T)
                                 + sum_{T in tau, 3, 5} KD(s_s, t_s, T)
                                 + sum_{T in 2, 6}      KD(s_w, t_w, T))
    loss_cc = class_weight * k * sum_Ts CC(s_w, t_w, T)
    loss_bc = batch_weight * m * sum_Ts BC(s_w, t_w, T)

Where the authors' code and the paper differ, the code is followed (it produced the published
numbers); each point is an argument or stated here:

* The masks scale whole losses: the code multiplies the batch-reduced losses (scalars) by the
  0/1 masks and averages (``(kd_loss(...) * mask).mean()``; the per-sample ``reduce=False`` is
  commented out), so "masking" is a factor, the fraction of low-confidence samples (1/2 for an
  even batch of distinct confidences) or classes. Kept, as the code; the masks are logged as
  ``mask_ratio`` and ``class_mask_ratio``.
* The strong view's instance term uses the weak logits at its last two temperatures (2 and 6):
  ``strong_from_weak=2`` (default, the code); 0 puts every temperature on the strong view.
* The class- and batch-level terms on the strong view are computed by the code but not
  returned to the optimiser: only the weak view's are used, as here.
* Cross-entropy on both views, ``ce_weight * (CE_w + CE_s)``: the student's own task loss on the
  2B-image batch is ``(CE_w + CE_s) / 2``, so the authors' CE weight ``w`` is the student
  head's ``loss_weight = 2 w`` (0.2 on CIFAR-100 where CE_WEIGHT is 0.1; 1.0 on ImageNet, 0.5).
  The block's ``loss_weight`` is the authors' KD_WEIGHT (0.9 on CIFAR-100, 0.5 on ImageNet).
* One forward of the 2B images instead of the authors' two forwards of B: for a student with
  BatchNorm the batch statistics in training are those of both views together (the authors':
  of each view alone, and the running statistics updated twice a step). The teacher is in eval
  mode, so its logits are the same.

Teachers' logits are detached. float32 at least (AMP-safe); float64 stays float64.
"""
from typing import Dict, Sequence

import torch
import torch.nn.functional as F

from ..losses import kl_from_log_probs
from ..registry import MODELS
from ..utils.arguments import InitCfg, NonNegativeFloat, NonNegativeInt, PositiveFloat
from .base import BaseDistillMethod

#: The data-sample metainfo naming an image's view (mmkd.datasets.transforms_multiview).
VIEW_KEY = 'view'


def instance_kd(s: torch.Tensor, t: torch.Tensor, tau: float) -> torch.Tensor:
    """``tau^2 * KL(softmax(t / tau) || softmax(s / tau))`` summed over classes, averaged over
    the B rows: a scalar."""
    kl = kl_from_log_probs(F.log_softmax(t / tau, dim=1), F.log_softmax(s / tau, dim=1))
    return kl.mean() * tau ** 2


def batch_correlation(s: torch.Tensor, t: torch.Tensor, tau: float) -> torch.Tensor:
    """``||P_t P_t^T - P_s P_s^T||_F^2 / B``, P = softmax(z / tau) (B, C): the samples'
    (B x B) prediction similarities."""
    ps, pt = F.softmax(s / tau, dim=1), F.softmax(t / tau, dim=1)
    return ((pt @ pt.t() - ps @ ps.t()) ** 2).sum() / s.shape[0]


def class_correlation(s: torch.Tensor, t: torch.Tensor, tau: float) -> torch.Tensor:
    """``||P_t^T P_t - P_s^T P_s||_F^2 / C``: the classes' (C x C) co-activation over the
    batch."""
    ps, pt = F.softmax(s / tau, dim=1), F.softmax(t / tau, dim=1)
    return ((pt.t() @ pt - ps.t() @ ps) ** 2).sum() / s.shape[1]


def _low_fraction(values: torch.Tensor) -> torch.Tensor:
    """The fraction of ``values`` at or below their median (linear interpolation, as
    ``np.percentile(values, 50)``)."""
    return (values <= torch.quantile(values, 0.5)).to(values.dtype).mean()


@MODELS.register_module()
class MLKD(BaseDistillMethod):
    """Multi-level logit distillation on a weak and a strong view (module docstring).

    Args:
        tau (float): the first temperature; the others are ``extra_taus``. Default 4.0 (the
            authors' KD.TEMPERATURE on CIFAR-100; 1.0 on ImageNet).
        extra_taus (list[float]): the other temperatures, in the authors' order. Default
            (3, 5, 2, 6), hard-coded in their code.
        strong_from_weak (int): how many of the last temperatures take the strong view's
            instance term from the weak logits, as the authors' code does. Default 2 (the code);
            0 = every temperature on the strong view (the paper).
        instance_weight (float): weight of the instance-level (multi-temperature KD) term
            ``loss_kd``. Default 1.0 (the authors' KD_WEIGHT goes in the block's
            ``loss_weight``).
        batch_weight (float): weight of the batch-level term ``loss_bc``. Default 1.0.
        class_weight (float): weight of the class-level term ``loss_cc``. Default 1.0.

    Block: ``student='head.fc'``, ``teacher='head.fc'`` (logits (2B, C) of the multi-view batch,
    weak views first) with the data samples of ``mmkd.multiview_collate`` (metainfo ``view``:
    0 for the first half, 1 for the second; the method refuses any other batch). Returns
    ``loss_kd``, ``loss_bc``, ``loss_cc`` and the diagnostics ``mask_ratio`` and
    ``class_mask_ratio``.

    References:
        Paper: Jin, Wang, Lin, "Multi-level Logit Distillation", CVPR 2023.
        Code: the authors', https://github.com/Jin-Ying/Multi-Level-Logit-Distillation
            (``mdistiller/distillers/KD_ours.py``, ``mdistiller/dataset/cifar100.py``).
    """

    def __init__(self, tau: PositiveFloat = 4.0,
                 extra_taus: Sequence[PositiveFloat] = (3.0, 5.0, 2.0, 6.0),
                 strong_from_weak: NonNegativeInt = 2, instance_weight: NonNegativeFloat = 1.0,
                 batch_weight: NonNegativeFloat = 1.0, class_weight: NonNegativeFloat = 1.0,
                 init_cfg: InitCfg = None):
        super().__init__(init_cfg=init_cfg)
        self.taus = (float(tau), ) + tuple(float(x) for x in extra_taus)
        if strong_from_weak > len(self.taus):
            raise ValueError(f'MLKD: strong_from_weak ({strong_from_weak}) is more than the '
                             f'{len(self.taus)} temperatures.')
        self.strong_from_weak = int(strong_from_weak)
        self.instance_weight = float(instance_weight)
        self.batch_weight = float(batch_weight)
        self.class_weight = float(class_weight)

    def build(self, student, teacher) -> None:
        for side, v in (('student', student), ('teacher', teacher)):
            if not isinstance(v, torch.Tensor) or v.dim() != 2:
                raise ValueError(f'MLKD: the {side} point must give classification logits '
                                 f'(N, C) (e.g. "head.fc"), got {type(v).__name__}'
                                 f'{tuple(v.shape) if isinstance(v, torch.Tensor) else ""}.')
        if student.shape != teacher.shape:
            raise ValueError(f'MLKD needs the same number of classes, got student '
                             f'{tuple(student.shape)} and teacher {tuple(teacher.shape)}.')
        super().build(student, teacher)

    @staticmethod
    def check_views(data_samples, n: int) -> None:
        """The batch must be the weak/strong layout of mmkd.multiview_collate: N = 2B, the
        first B samples of view 0, the last B of view 1."""
        views = None if data_samples is None or len(data_samples) != n else [
            s.metainfo.get(VIEW_KEY) for s in data_samples]
        half = n // 2
        if (views is None or n % 2 or half == 0
                or views != [0] * half + [1] * half):
            got = 'no data samples' if data_samples is None else (
                f'{len(data_samples)} data samples for {n} images, views '
                f'{None if views is None else views[:8]}')
            raise ValueError(
                'MLKD needs the two-view batch: the weak views of B images, then their strong '
                "views (train pipeline dict(type='mmkd.MultiViews', views=[weak, strong]) "
                "before PackInputs, and train_dataloader.collate_fn=dict(type="
                f"'mmkd.multiview_collate')); got {got}.")

    def forward(self, student, teacher, data_samples=None) -> Dict[str, torch.Tensor]:
        self.check_views(data_samples, student.shape[0])
        dtype = torch.promote_types(student.dtype, torch.float32)
        s, t = student.to(dtype), teacher.detach().to(dtype)
        b = s.shape[0] // 2
        s_w, s_s, t_w, t_s = s[:b], s[b:], t[:b], t[b:]

        p_w = F.softmax(t_w, dim=1)
        mask_ratio = _low_fraction(p_w.max(dim=1).values)      # samples
        class_mask_ratio = _low_fraction(p_w.sum(dim=0))        # classes

        strong_taus = len(self.taus) - self.strong_from_weak
        kd_weak = sum(instance_kd(s_w, t_w, tau) for tau in self.taus)
        kd_strong = sum(instance_kd(s_s, t_s, tau) if i < strong_taus
                        else instance_kd(s_w, t_w, tau) for i, tau in enumerate(self.taus))
        bc = sum(batch_correlation(s_w, t_w, tau) for tau in self.taus)
        cc = sum(class_correlation(s_w, t_w, tau) for tau in self.taus)
        return dict(loss_kd=self.instance_weight * (mask_ratio * kd_weak + kd_strong),
                    loss_bc=self.batch_weight * mask_ratio * bc,
                    loss_cc=self.class_weight * class_mask_ratio * cc,
                    mask_ratio=mask_ratio.detach(), class_mask_ratio=class_mask_ratio.detach())
