"""WSLD: weighted soft labels, KD re-weighted per sample by how the student does against the
teacher on the true class.

"Rethinking Soft Labels for Knowledge Distillation: A Bias-Variance Tradeoff Perspective"
(Zhou, Song, Chen, Zhou, Wang, Yuan, Zhang, ICLR 2021; authors' code
bellymonster/Weighted-Soft-Label-Distillation, ``knowledge_distiller.py`` at 67820dd; MMRazor's
port ``mmrazor/models/losses/weighted_soft_label_distillation.py`` at 0fe347f, the same
formula). Samples on which the student is already better than the teacher (relative to the
label) are "regularisation samples": their soft labels add bias, so they are weighted down::

    logits s, t (N, C), label y (N,)
    soft  = -sum_c softmax(t / T)_c * log_softmax(s / T)_c           (N,)  soft cross entropy
    ce_s  = -log_softmax(s)_y,  ce_t = -log_softmax(t)_y  (T = 1, both detached)   (N,)
    w     = 1 - exp(-max(ce_s / (ce_t + 1e-7), 0))                    (N,)  in [0, 1)
    loss  = T^2 * mean_i(w_i * soft_i)

The weight is a constant (no gradient flows through it), as in the authors' code. As there,
the soft term is the cross entropy with the teacher's soft labels, not the KL divergence:
their gradients with respect to the student are the same; the value differs by the teacher's
(weighted) entropy, a constant.

Defaults are the authors' (ImageNet, their only released recipe): T 2, and their weight
``alpha = 2.5`` on the soft loss is the block's ``loss_weight=2.5`` (MMRazor's config does the
same: ``loss_weight=2.5``, ``tau=2``); CE on the labels stays the student's own loss, weight 1.

Block: the classification logits (N, C) of both models (``'head.fc'``) and the data samples'
``gt_label``. Returns ``loss_wsld``; ``wsld_weight`` (the mean w) is logged.
"""
from typing import Dict

import torch
import torch.nn.functional as F

from ..registry import MODELS
from ..utils.arguments import InitCfg, PositiveFloat
from .base import BaseDistillMethod, gt_labels
from .dkd import _check_logits


@MODELS.register_module()
class WSLD(BaseDistillMethod):
    """Weighted soft label distillation: ``T^2 * mean(w * soft CE)`` (module docstring).

    Args:
        tau (float): temperature of the soft labels. Default 2.0 (the authors' code and
            MMRazor's config; the sample weights always use T = 1, as there).
        eps (float): added to the teacher's cross entropy before dividing. Default 1e-7 (the
            authors').

    Block: ``student='head.fc', teacher='head.fc'`` (logits (N, C)) and the data samples'
    ``gt_label``; the authors' ``alpha`` 2.5 is the block's ``loss_weight``. Returns
    ``loss_wsld`` and the logged mean weight ``wsld_weight``.

    References:
        Paper: Zhou, Song, Chen, Zhou, Wang, Yuan, Zhang, "Rethinking Soft Labels for Knowledge
            Distillation: A Bias-Variance Tradeoff Perspective", ICLR 2021 (arXiv 2102.00650).
        Code: the authors', https://github.com/bellymonster/Weighted-Soft-Label-Distillation
            (``knowledge_distiller.py``); MMRazor's ``WSLD`` loss.
    """
    #: Its teacher values are logits: a cached teacher may store them as top-K.
    reads_teacher_logits = True

    def __init__(self, tau: PositiveFloat = 2.0, eps: PositiveFloat = 1e-7,
                 init_cfg: InitCfg = None):
        super().__init__(init_cfg=init_cfg)
        self.tau, self.eps = float(tau), float(eps)

    def build(self, student, teacher) -> None:
        _check_logits('WSLD', student, teacher)
        super().build(student, teacher)

    def forward(self, student, teacher, data_samples=None) -> Dict[str, torch.Tensor]:
        _check_logits('WSLD', student, teacher)
        dtype = torch.promote_types(student.dtype, torch.float32)  # float32 under AMP
        s, t = student.to(dtype), teacher.to(dtype).detach()
        labels = gt_labels(data_samples, s.shape[0], s.device, 'WSLD')
        if labels.min() < 0 or labels.max() >= s.shape[1]:
            raise ValueError(f'WSLD: labels {labels.tolist()} outside the {s.shape[1]} '
                             'classes of the logits.')
        soft = -(F.softmax(t / self.tau, dim=1) * F.log_softmax(s / self.tau, dim=1)).sum(1)
        with torch.no_grad():
            ce_s = F.cross_entropy(s.detach(), labels, reduction='none')
            ce_t = F.cross_entropy(t, labels, reduction='none')
            weight = 1 - torch.exp(-(ce_s / (ce_t + self.eps)).clamp(min=0))
        return dict(loss_wsld=self.tau ** 2 * (weight * soft).mean(),
                    wsld_weight=weight.mean())
