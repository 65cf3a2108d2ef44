"""LD: localization distillation for GFL-style detection heads, built on mmdet's own parts.

"Localization Distillation for Dense Object Detection" (Zheng et al., CVPR 2022; authors' code
HikariTJU/LD, merged into mmdet as ``LDHead`` + ``KnowledgeDistillationKLDivLoss``). A GFL head
predicts each box side as a distribution over ``reg_max + 1`` bins; LD distils the teacher's
distributions into the student's at the student's positive locations::

    student / teacher bbox_head outputs, per FPN level l (same strides and sizes):
      cls_scores[l]  (N, C, H_l, W_l)              student only: the weights
      bbox_preds[l]  (N, 4 * (reg_max + 1), H_l, W_l)
    positives: the student head's own assignment (its get_anchors + get_targets: ATSS for GFL)
    per positive location and side k (4 sides), bins b = 0..reg_max:
      w   = max_c sigmoid(cls_score_student)        (detached, the student's confidence)
      KL  = mean_b [ p_T log(p_T / p_S) ] * T^2,   p = softmax(bbox_pred_side / T)
    loss = sum over levels of  sum_{positives, sides} w * KL / 4

That is exactly mmdet 3.3's ``LDHead.loss_by_feat``'s ``loss_ld`` (tested to be equal),
before its weight: mmdet's config ``ld_r18-gflv1-r101_fpn_1x_coco.py`` uses T 10 and weight
0.25, so a block ``loss_weight=0.25`` with ``tau=10`` here. As there, the sum over positives is
not divided by their number.

What is reused, not rewritten: mmdet's ``KnowledgeDistillationKLDivLoss`` (the loss), the
student head's ``get_anchors`` / ``get_targets`` (the assignment) and mmdet's
``unpack_gt_instances``. What mmkd adds: mmdet runs LD as its own detector type
(``KnowledgeDistillationSingleStageDetector`` + ``LDHead``, whose ``loss`` takes the teacher's
outputs), while here the student stays a plain ``GFL`` with a plain ``GFLHead`` (its exported
weights load in mmdet as they are) and the teacher's head outputs come from a record point, so
LD combines with any other block and teacher. The cost: the student's assignment runs twice
per step (once for its own loss, once here).

The paper's second part, the valuable localization region (VLR: LD also on locations the
assigner leaves negative but whose anchors overlap a box), is in the authors' code, not in
mmdet's ``LDHead``; it is not implemented here either.

Block (the head's leaves: mmdet's detectors call ``bbox_head.forward()`` directly in tensor
mode, which runs no hooks, so the head itself cannot be a record point of the teacher; its
``gfl_cls`` convolution, called once per level, and its per-level ``scales`` are)::

    ld=dict(student=['bbox_head.gfl_cls', 'bbox_head.scales.*'],   # cls scores, bbox_preds
            teacher='bbox_head.scales.*',                           # bbox_preds
            method=dict(type='LD', tau=10.0), loss_weight=0.25)

Degenerate batches stay finite: no positive location (images without boxes) gives 0.
"""
from typing import Annotated, Dict

import torch
import torch.nn as nn

from ..recorders import find_module
from ..registry import MODELS
from ..utils.arguments import InitCfg, Interval
from .base import BaseDistillMethod

REQUIRED = ('reg_max', 'num_classes', 'get_anchors', 'get_targets', 'prior_generator')


Temperature = Annotated[float, Interval(
    ge=1, why='mmdet KnowledgeDistillationKLDivLoss asserts T >= 1')]

BLOCK = ("ld=dict(student=['bbox_head.gfl_cls', 'bbox_head.scales.*'], "
         "teacher='bbox_head.scales.*', method=dict(type='LD'), loss_weight=0.25)")


def _split(student, teacher):
    """``(cls_scores, student bbox_preds, teacher bbox_preds)``, lists of (N, *, H, W) maps
    per level, from the block's values (module docstring)."""
    ok = isinstance(student, (list, tuple)) and len(student) >= 2
    if ok:
        cls = list(student[0]) if isinstance(student[0], (tuple, list)) else [student[0]]
        s_reg = list(student[1:])
        t_reg = list(teacher) if isinstance(teacher, (tuple, list)) else [teacher]
        ok = all(isinstance(t, torch.Tensor) and t.dim() == 4 for t in cls + s_reg + t_reg)
    if not ok:
        raise ValueError(f'LD reads the classification convolution (called once per level) and '
                         f"each level's scaled box prediction of a GFL-style head: {BLOCK}.")
    if not len(cls) == len(s_reg) == len(t_reg):
        raise ValueError(f'LD: {len(cls)} classification level(s), {len(s_reg)} student and '
                         f'{len(t_reg)} teacher box level(s); they must be equal: {BLOCK}.')
    return cls, s_reg, t_reg


@MODELS.register_module()
class LD(BaseDistillMethod):
    """Localization distillation of a GFL-style head's box-side distributions (module
    docstring).

    Args:
        head (str): the student's head module whose assignment picks the positive locations.
            Default 'bbox_head'. It must be a GFL-style mmdet head (``reg_max``,
            ``get_anchors``, ``get_targets``: ``GFLHead``, ``LDHead``).
        tau (float): temperature. Default 10 (mmdet's LD config).

    Block: ``student=['bbox_head.gfl_cls', 'bbox_head.scales.*']`` (the classification conv
    and the scaled box predictions, one value per FPN level), ``teacher='bbox_head.scales.*'``
    (its scaled box predictions), as in the module docstring; the data samples'
    ``gt_instances``. Returns ``loss_ld``.

    References:
        Paper: Zheng, Ye, Wang, Ren, Zuo, Hou, Cheng, "Localization Distillation for Dense
            Object Detection", CVPR 2022 (arXiv 2102.12252).
        Code: the authors', https://github.com/HikariTJU/LD; mmdet's ``LDHead`` and
            ``KnowledgeDistillationKLDivLoss``, reused here.
    """

    def __init__(self, head: str = 'bbox_head', tau: Temperature = 10.0,
                 init_cfg: InitCfg = None):
        super().__init__(init_cfg=init_cfg)
        from mmdet.models.losses import KnowledgeDistillationKLDivLoss
        self.head_name = head
        self.tau = float(tau)
        self.loss_ld = KnowledgeDistillationKLDivLoss(loss_weight=1.0, T=self.tau)
        self._student = {}  # the head, outside nn.Module's registry (it is the student's)

    def bind_student(self, student: nn.Module) -> None:
        head = find_module(student, self.head_name, 'student (LD head)')
        missing = [a for a in REQUIRED if not hasattr(head, a)]
        if missing:
            raise ValueError(f'LD: the student module {self.head_name!r} '
                             f'({type(head).__name__}) is not a GFL-style head (no '
                             f'{missing}); LD needs one such as mmdet GFLHead or LDHead.')
        self._student['head'] = head

    @property
    def head(self) -> nn.Module:
        if 'head' not in self._student:
            raise RuntimeError('LD: bind_student() was not called (the Distiller calls it).')
        return self._student['head']

    def build(self, student, teacher) -> None:
        _, s_reg, t_reg = _split(student, teacher)
        bins = 4 * (self.head.reg_max + 1)
        for i, (s, t) in enumerate(zip(s_reg, t_reg)):
            if s.shape[1] != bins or t.shape != s.shape:
                raise ValueError(f'LD: level {i}: student bbox_pred {tuple(s.shape)}, teacher '
                                 f'{tuple(t.shape)}; both must be (N, 4 * (reg_max + 1) = '
                                 f'{bins}, H, W) with the same reg_max and strides.')
        super().build(student, teacher)

    def forward(self, student, teacher, data_samples=None) -> Dict[str, torch.Tensor]:
        from mmdet.models.utils import unpack_gt_instances
        s_cls, s_reg, t_reg = _split(student, teacher)
        if not data_samples or not all('gt_instances' in s for s in data_samples):
            raise ValueError('LD needs the ground-truth boxes: detection data samples with '
                             'gt_instances.')
        head, n_bins = self.head, self.head.reg_max + 1
        gts, ignores, metas = unpack_gt_instances(data_samples)
        device = s_cls[0].device
        anchors, valid = head.get_anchors([c.shape[-2:] for c in s_cls], metas, device=device)
        labels = head.get_targets(anchors, valid, gts, metas,
                                  batch_gt_instances_ignore=ignores)[1]
        total = sum(r.sum() for r in s_reg) * 0  # in the graph of every level, even empty
        for cls, reg, soft, lab in zip(s_cls, s_reg, t_reg, labels):
            pos = ((lab >= 0) & (lab < head.num_classes)).reshape(-1)
            if not pos.any():
                continue
            weight = cls.detach().permute(0, 2, 3, 1).reshape(-1, cls.shape[1])[pos]
            weight = weight.float().sigmoid().max(dim=1)[0]
            pred = reg.permute(0, 2, 3, 1).reshape(-1, 4 * n_bins)[pos].reshape(-1, n_bins)
            target = soft.detach().permute(0, 2, 3, 1).reshape(-1, 4 * n_bins)[pos]
            total = total + self.loss_ld(
                pred.float(), target.reshape(-1, n_bins).float(),
                weight=weight[:, None].expand(-1, 4).reshape(-1), avg_factor=4.0)
        return dict(loss_ld=total)
