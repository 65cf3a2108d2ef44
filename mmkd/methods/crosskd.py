"""CrossKD: cross-head knowledge distillation for dense detectors (GFL, RetinaNet, ATSS, FCOS).

"CrossKD: Cross-Head Knowledge Distillation for Object Detection" (Wang, Chen, Zheng, Li,
Cheng, Hou, CVPR 2024; authors' code jbwang1997/CrossKD at 87e156a4, built on mmdet 3.x:
``mmdet/models/detectors/crosskd_gfl.py``, ``crosskd_retinanet.py``, ``crosskd_atss.py``,
``crosskd_fcos.py``, ``crosskd_single_stage.py``, ``mmdet/models/losses/kd_loss.py``). The
student's intermediate head features are fed into the teacher's remaining head; the teacher's
own predictions supervise that *cross-head* output, so the student never has to mimic the
teacher's predictions with its own (conflicting) head. Data flow for FPN level l, crossing index
k = ``reused_teacher_head_idx`` (the head's k-th conv; authors: 3 of 4, FCOS 2)::

    student head, per branch b in (cls, reg):
      s_b  (N, C, H_l, W_l)  = output of b_convs[k-1], after its ReLU (k = 0: the FPN level;
                               ``pre_activation=True``: before the ReLU, see below)
    teacher head, same points:
      t_b  (N, C, H_l, W_l)  = the same point of its b_convs[k-1]
      its predictions: cls_score (N, A * K, H_l, W_l), bbox_pred (N, A * B, H_l, W_l)
                       (A anchors, K classes; B = 4 * (reg_max + 1) for GFL, 4 deltas for
                       RetinaNet and ATSS, 4 distances for FCOS: exp of the scaled output,
                       or with norm_on_bbox its clamp at 0 times the stride, the teacher
                       head being in eval mode); ATSS: centerness (N, A, H_l, W_l)
    x_b = align_scale(s_b, t_b)           per channel: (s - mean_s) / (std_s + 1e-6) * std_t
                                          + mean_t, statistics over (N, H, W), unbiased std
    x_b = relu(x_b)                       if k != 0
    cross cls_score = TeacherPath(cls_convs[k:], <cls predictor>)(x_cls)
    cross bbox_pred = TeacherPath(reg_convs[k:], <reg predictor>[, scales[l]])(x_reg)
                      (FCOS: then exp, or the clamp and stride, as the teacher's)
    ATSS: cross centerness = atss_centerness(the same reg_convs[k:] output)
    (teacher modules, frozen: gradients reach the student's features only)

Losses, with the *student's* assignment (its ``get_anchors`` + ``get_targets``: label weights
w_lab per anchor, ``avg_factor`` = number of positives; GFL: ``reduce_mean`` over processes)::

    loss_cls_kd = sum_l KDQFL(cross_cls_l, sigmoid(t_cls_l), weight=w_lab) / avg_factor
                  KDQFL(p, q) = BCE_with_logits(p, q) * |sigmoid(p) - q| ** beta, summed
                  over classes (mmdet's QualityFocalLoss with a tensor target: identical)
    w_reg = sigmoid(max_c t_cls) per anchor, 0 where w_lab = 0
    GFL:       loss_reg_kd = 4 * sum_l sum_{anchor, side} w_reg * KL_sum(softmax(t / T) ||
               softmax(cross / T)) * T^2 / 4 / sum_l sum_anchor w_reg      (T = 1, bins summed)
    RetinaNet, ATSS: loss_reg_kd = sum_l GIoU(decode(cross_reg_l), decode(t_reg_l), w_reg) /
               avg_factor              (boxes decoded with the student's anchors and coder;
                                        ATSS: avg_factor through reduce_mean)
    ATSS:      loss_center_kd = sum_l BCE_with_logits(cross_ctr_l[pos], sigmoid(t_ctr_l[pos]))
               summed / avg_factor     (pos: the student's positive anchors on level l; 0 on
                                        a level without any)

FCOS (the student's point assignment, its ``get_targets``; all levels' points together, no
label weights, D = max(reduce_mean(sum of the positives' centerness targets), 1e-6), the
student's own FCOS loss denominator)::

    loss_cls_kd = 0.4 * sum KDQFL(cross_cls, sigmoid(t_cls)) / D
    loss_reg_kd = 0.75 * sum IoU_log(decode(points, cross_reg), decode(points, t_reg), w) / D
                  w = sigmoid(max_c t_cls) per point (not masked)

Defaults are the authors' configs (``configs/crosskd/crosskd_r50_gflv1_r101-2x-ms_fpn_1x_coco
.py``, ``crosskd_r50_retinanet_r101_fpn_2x_coco.py``, ``crosskd_r50_atss_r101_fpn_1x_coco.py``,
``crosskd_r50_fcos_r101-2x-ms_caffe_fpn_gn-head_2x_ms_coco.py``), per head kind: k = 3 (FCOS
2); ``KDQualityFocalLoss`` beta 1, weight 1 (FCOS 0.4); GFL: ``KnowledgeDistillationKLDivLoss``
with ``class_reduction='sum'``, T 1, weight 4; RetinaNet, ATSS: ``GIoULoss`` weight 1; ATSS:
``CrossEntropyLoss(use_sigmoid=True)`` weight 1 on the centerness; FCOS: ``IoULoss`` weight
0.75 (no centerness KD). Keep the block's ``loss_weight`` at 1.

What is reused, not rewritten: mmdet's ``QualityFocalLoss`` (with a tensor target it *is* the
authors' ``KDQualityFocalLoss``), ``KnowledgeDistillationKLDivLoss`` (mmdet's averages over the
bins, the authors' ``class_reduction='sum'`` sums them: the weight is multiplied by
``reg_max + 1``), ``GIoULoss``, ``IoULoss``, ``CrossEntropyLoss`` (it casts the soft label to
float32: the centerness KD is float32-precise even in float64, as in the authors' code), the
student head's ``get_anchors`` / ``get_targets`` / ``centerness_target`` / ``bbox_coder``,
and the teacher's own modules through :class:`~.teacher_path.TeacherPath` (the general
head-sharing mechanism). What mmkd adds: the authors' ``CrossKDGFL`` (``CrossKDATSS``, ...)
is its own detector type holding the teacher; here the student stays a plain mmdet detector
(its exported weights load in mmdet as they are) and CrossKD is a block that combines with
any other block (the authors' CrossKD+PKD is two blocks). The cost: the student's assignment
runs twice per step (once for its own loss, once here), as in :class:`~.ld.LD`.

**The crossing features are post-ReLU in the authors' code.** ``forward_crosskd_single``
holds ``cls_feat = cls_conv(cls_feat, activate=False)`` (the ConvModule's norm output) and then
calls ``cls_conv.activate(cls_feat)``: mmcv's ConvModule builds ``ReLU(inplace=True)``, which
overwrites the held tensor. So what their ``align_scale`` sees, for the student and for the
teacher, is the *post*-ReLU feature (checked in tests/test_crosskd.py by running their lines),
and the ``relu`` after ``align_scale`` acts on the re-scaled map. The published numbers come
from that computation, and it is the default here: the method applies ``relu`` to the
recorded crossing features (idempotent on a post-ReLU value, so the record point may be the
norm's output, ``'...cls_convs.2.gn'``, which the in-place ReLU overwrites exactly as in their
code, or the ConvModule's own output, ``'...cls_convs.2'``; ``'...conv'`` for a head without
norm, RetinaNet's). ``pre_activation=True`` gives what their ``activate=False`` evidently
intends: :meth:`CrossKD.bind_student` / :meth:`CrossKD.bind_teachers` make the crossing
ConvModule's ReLU out of place in both models (values unchanged; one more map per level is
kept), the record point must then be the norm's (or conv's) output, and the method checks
each recorded tensor's in-place version counter.

Block (GFL, k = 3; the teacher's predictions are its ``gfl_cls`` and its scaled box
predictions, the head's leaves, as for :class:`~.ld.LD`)::

    crosskd=dict(
        student=['bbox_head.cls_convs.2.gn', 'bbox_head.reg_convs.2.gn'],  # k - 1 = 2
        teacher=['bbox_head.cls_convs.2.gn', 'bbox_head.reg_convs.2.gn',
                 'bbox_head.gfl_cls', 'bbox_head.scales.*'],
        method=dict(type='CrossKD'))
    # RetinaNet (no norm in the head): '...cls_convs.2.conv', '...reg_convs.2.conv',
    # and the predictions 'bbox_head.retina_cls', 'bbox_head.retina_reg'.

The student's and the teacher's heads must have the same ``feat_channels`` at the crossing
(the authors' pairs all have 256-wide heads; ``align_scale`` works per channel), the same
strides, classes, anchors (RetinaNet, ATSS), ``reg_max`` (GFL) and ``norm_on_bbox`` (FCOS).
ATSS's block gives the teacher's ``'bbox_head.atss_centerness'`` last; FCOS's crosses at
``'...cls_convs.1.gn'`` / ``'...reg_convs.1.gn'`` and reads ``'bbox_head.conv_cls'``,
``'bbox_head.scales.*'`` (configs/crosskd). A batch without positive anchors divides the
classification KD by mmdet's ``eps`` (as the authors' code and the student's own GFL /
RetinaNet / ATSS losses do; FCOS: by 1e-6, their ``max(..., 1e-6)``).
"""
from typing import Annotated, Dict, List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..recorders import find_module
from ..registry import MODELS
from ..utils.arguments import InitCfg, Interval, NonNegativeFloat, NonNegativeInt, PositiveFloat
from .base import BaseDistillMethod, flatten_levels
from .teacher_path import TeacherPath

Temperature = Annotated[float, Interval(
    ge=1, why='mmdet KnowledgeDistillationKLDivLoss asserts T >= 1')]

#: per head kind: cls predictor, reg predictor modules (after the convs), centerness predictor
#: (on the reg branch), and the authors' defaults: crossing index, cls / reg / centerness weights.
HEADS = {
    'gfl': dict(cls=['gfl_cls'], reg=['gfl_reg', 'scales'], idx=3, cls_weight=1.0,
                reg_weight=4.0),
    'retina': dict(cls=['retina_cls'], reg=['retina_reg'], idx=3, cls_weight=1.0,
                   reg_weight=1.0),
    'atss': dict(cls=['atss_cls'], reg=['atss_reg', 'scales'], center=['atss_centerness'],
                 idx=3, cls_weight=1.0, reg_weight=1.0, center_weight=1.0),
    'fcos': dict(cls=['conv_cls'], reg=['conv_reg', 'scales'], idx=2, cls_weight=0.4,
                 reg_weight=0.75),
}
BLOCK = ("crosskd=dict(student=['bbox_head.cls_convs.2.gn', 'bbox_head.reg_convs.2.gn'], "
         "teacher=['bbox_head.cls_convs.2.gn', 'bbox_head.reg_convs.2.gn', "
         "'bbox_head.gfl_cls', 'bbox_head.scales.*'], method=dict(type='CrossKD'))")


def head_kind(head: nn.Module) -> Optional[str]:
    """'gfl' for mmdet's GFLHead (and subclasses: LDHead), 'retina' for RetinaHead, 'atss'
    for ATSSHead, 'fcos' for FCOSHead, else None."""
    from mmdet.models.dense_heads import ATSSHead, FCOSHead, GFLHead, RetinaHead
    if isinstance(head, GFLHead):
        return 'gfl'
    if isinstance(head, RetinaHead):
        return 'retina'
    if isinstance(head, ATSSHead):
        return 'atss'
    if isinstance(head, FCOSHead):
        return 'fcos'
    return None


def align_scale(student: torch.Tensor, teacher: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """The authors' ``align_scale``: the student map (N, C, H, W) standardised per channel
    over (N, H, W) (unbiased std, ``+ eps``) and given the teacher map's per-channel mean and
    std."""
    dims = (0, 2, 3)
    s_mean, s_std = student.mean(dims, keepdim=True), student.std(dims, keepdim=True)
    t_mean, t_std = teacher.mean(dims, keepdim=True), teacher.std(dims, keepdim=True)
    return (student - s_mean) / (s_std + eps) * t_std + t_mean


def at_least_float32(x: torch.Tensor) -> torch.Tensor:
    return x if x.dtype == torch.float64 else x.float()


def get_box(boxes) -> torch.Tensor:
    """mmdet's ``get_box_tensor`` (a box coder may return ``BaseBoxes``)."""
    from mmdet.structures.bbox import get_box_tensor
    return get_box_tensor(boxes)


def keep_pre_activation(conv_module: nn.Module) -> None:
    """Make an mmcv ConvModule's activation out of place, so that its conv / norm output (the
    pre-activation a record point reads) is not overwritten (module docstring)."""
    act = getattr(conv_module, 'activate', None)
    if getattr(conv_module, 'with_activation', False) and getattr(act, 'inplace', False):
        act.inplace = False


@MODELS.register_module()
class CrossKD(BaseDistillMethod):
    """Cross-head KD (module docstring): the student's head features run through the
    teacher's remaining head, supervised by the teacher's predictions.

    Args:
        head (str): the detection head's module name, in the student and in the teacher.
            Default 'bbox_head'. mmdet ``GFLHead`` (and ``LDHead``), ``RetinaHead``,
            ``ATSSHead`` or ``FCOSHead``, the same kind on both sides.
        reused_teacher_head_idx (int, optional): k, where the student crosses into the
            teacher's head: the student's ``cls_convs[k-1]`` / ``reg_convs[k-1]`` outputs go
            through the teacher's ``*_convs[k:]`` and predictors (0: the FPN features, through
            the whole teacher head); at most the teacher head's ``stacked_convs``. Default
            None: the authors' 3 for GFL, RetinaNet and ATSS, 2 for FCOS (4-conv heads).
        loss_cls_weight (float, optional): weight of the classification KD (the authors'
            ``KDQualityFocalLoss`` ``loss_weight``). Default None: the authors' 1.0, 0.4 for
            FCOS.
        loss_reg_weight (float, optional): weight of the box KD. Default None: the authors'
            4.0 for GFL (KL on the box distributions), 1.0 for RetinaNet and ATSS (GIoU),
            0.75 for FCOS (IoU).
        loss_center_weight (float, optional): ATSS only, weight of the centerness KD (BCE on
            the student's positives). Default None: the authors' 1.0.
        beta (float): the focal exponent of the classification KD. Default 1.0 (authors).
        tau (float): temperature of the GFL box-distribution KL. Default 1.0 (authors).
        pre_activation (bool): cross with the features *before* the ReLU of
            ``*_convs[k-1]`` (what the authors' ``activate=False`` intends) instead of after
            it (what their code computes, the default False; module docstring). True makes
            that ReLU out of place in both models; record the norm's (or conv's) output.

    Block: the student's crossing features ``[cls, reg]`` and the teacher's
    ``[cls, reg, cls_scores, bbox_preds...]`` (module docstring), each one value per FPN level;
    ATSS: the teacher's centerness predictions last, ``[..., bbox_preds..., centernesses]``.
    The data samples' ``gt_instances``. Returns ``loss_cls_kd`` and ``loss_reg_kd`` (ATSS: and
    ``loss_center_kd``).

    References:
        Paper: Wang, Chen, Zheng, Li, Cheng, Hou, "CrossKD: Cross-Head Knowledge Distillation
            for Object Detection", CVPR 2024 (arXiv 2306.11369).
        Code: the authors', https://github.com/jbwang1997/CrossKD (87e156a4); mmdet's
            ``QualityFocalLoss``, ``KnowledgeDistillationKLDivLoss``, ``GIoULoss``,
            ``IoULoss`` and ``CrossEntropyLoss``, reused.
    """

    def __init__(self, head: str = 'bbox_head',
                 reused_teacher_head_idx: Optional[NonNegativeInt] = None,
                 loss_cls_weight: Optional[NonNegativeFloat] = None,
                 loss_reg_weight: Optional[NonNegativeFloat] = None,
                 loss_center_weight: Optional[NonNegativeFloat] = None,
                 beta: PositiveFloat = 1.0, tau: Temperature = 1.0,
                 pre_activation: bool = False, init_cfg: InitCfg = None):
        super().__init__(init_cfg=init_cfg)
        from mmdet.models.losses import (CrossEntropyLoss, GIoULoss, IoULoss,
                                         KnowledgeDistillationKLDivLoss, QualityFocalLoss)
        self.head_name = head
        self._idx = reused_teacher_head_idx
        self._loss_cls_weight = loss_cls_weight
        self._loss_reg_weight = loss_reg_weight
        self._loss_center_weight = loss_center_weight
        self.beta, self.tau = float(beta), float(tau)
        self.pre_activation = pre_activation
        # Weights are applied here, not in the losses (one place for the GFL bins factor).
        self.loss_cls_kd = QualityFocalLoss(use_sigmoid=True, beta=self.beta, loss_weight=1.0)
        self.loss_kl = KnowledgeDistillationKLDivLoss(loss_weight=1.0, T=self.tau)
        self.loss_giou = GIoULoss(loss_weight=1.0)
        self.loss_iou = IoULoss(loss_weight=1.0)  # FCOS (mmdet's defaults: 'log' mode)
        self.loss_center_kd = CrossEntropyLoss(use_sigmoid=True, loss_weight=1.0)  # ATSS
        self._models: Dict[str, nn.Module] = {}  # the heads: references, not sub-modules
        self.kind: Optional[str] = None
        self.paths: Dict[str, TeacherPath] = {}

    # -- binding ------------------------------------------------------------------------
    def _head(self, model: nn.Module, desc: str) -> nn.Module:
        head = find_module(model, self.head_name, f'{desc} (CrossKD head)')
        kind = head_kind(head)
        if kind is None:
            raise ValueError(f'CrossKD: the {desc} module {self.head_name!r} is a '
                             f'{type(head).__name__}; CrossKD supports mmdet GFLHead (LDHead), '
                             'RetinaHead, ATSSHead and FCOSHead.')
        if self.kind is None:
            self.kind = kind
        convs = min(len(head.cls_convs), len(head.reg_convs))
        if self.idx > convs:
            raise ValueError(f'CrossKD: reused_teacher_head_idx={self.idx} but the {desc} head '
                             f'({type(head).__name__}) has {convs} stacked convs; k must be '
                             f'0..{convs} (the authors: 3 of 4).')
        if self.idx > 0 and self.pre_activation:  # keep the pre-activation output
            keep_pre_activation(head.cls_convs[self.idx - 1])
            keep_pre_activation(head.reg_convs[self.idx - 1])
        return head

    def bind_student(self, student: nn.Module) -> None:
        self._models['student'] = self._head(student, 'student')

    def bind_teachers(self, teachers: Dict[str, nn.Module]) -> None:
        if len(teachers) != 1:
            raise ValueError(f'CrossKD reads one teacher (its head is reused); this block reads '
                             f'{list(teachers)}.')
        head = self._head(next(iter(teachers.values())), 'teacher')
        student = self._models.get('student')
        kind = head_kind(head)
        if student is not None:
            if head_kind(student) != kind:
                raise ValueError(f'CrossKD: the student head is a {type(student).__name__}, '
                                 f'the teacher head a {type(head).__name__}; they must be of '
                                 'one kind (GFL, RetinaNet, ATSS or FCOS).')
            for attr in ('num_classes', 'cls_out_channels', 'reg_max', 'num_base_priors',
                         'strides', 'norm_on_bbox'):
                a, b = getattr(student, attr, None), getattr(head, attr, None)
                if a != b:
                    raise ValueError(f'CrossKD: the student head has {attr}={a}, the teacher '
                                     f'head {attr}={b}; the cross-head outputs are compared '
                                     "with the student's targets, so they must be equal.")
        self._models['teacher'] = head
        self.kind = kind
        h, n = self.head_name, len(head.cls_convs)
        spec = HEADS[kind]
        reg_convs = [f'{h}.reg_convs.{i}' for i in range(self.idx, len(head.reg_convs))]
        self.paths = dict(cls=TeacherPath([f'{h}.cls_convs.{i}' for i in range(self.idx, n)]
                                          + [f'{h}.{m}' for m in spec['cls']]))
        if 'center' not in spec:
            self.paths['reg'] = TeacherPath(reg_convs + [f'{h}.{m}' for m in spec['reg']])
        else:  # ATSS: box and centerness predictors share the reg branch's last feature
            if reg_convs:
                self.paths['reg_convs'] = TeacherPath(reg_convs)
            self.paths['reg'] = TeacherPath([f'{h}.{m}' for m in spec['reg']])
            self.paths['center'] = TeacherPath([f'{h}.{m}' for m in spec['center']])
        for path in self.paths.values():
            path.bind(teachers)

    @property
    def student_head(self) -> nn.Module:
        if 'student' not in self._models or 'teacher' not in self._models:
            raise RuntimeError('CrossKD: bind_student() / bind_teachers() were not called (the '
                               'Distiller calls them).')
        return self._models['student']

    def _default(self, value, key):
        return HEADS[self.kind or 'gfl'].get(key, 0.0) if value is None else value

    @property
    def idx(self) -> int:
        """k (``reused_teacher_head_idx``; None: the authors' default for the head kind)."""
        return int(self._default(self._idx, 'idx'))

    @property
    def loss_cls_weight(self) -> float:
        return float(self._default(self._loss_cls_weight, 'cls_weight'))

    @property
    def loss_reg_weight(self) -> float:
        return float(self._default(self._loss_reg_weight, 'reg_weight'))

    @property
    def loss_center_weight(self) -> float:
        return float(self._default(self._loss_center_weight, 'center_weight'))

    # -- values ---------------------------------------------------------------------------
    def _split(self, student, teacher):
        """Per-level lists: s_cls, s_reg, t_cls, t_reg, t_scores, t_preds (ATSS: and
        t_centers)."""
        center = 'center' in HEADS[self.kind or 'gfl']
        ok = (isinstance(student, (list, tuple)) and len(student) == 2
              and isinstance(teacher, (list, tuple)) and len(teacher) >= 4 + center)
        if ok:
            s_cls, s_reg = flatten_levels(student[0]), flatten_levels(student[1])
            t_cls, t_reg, t_scores = (flatten_levels(v) for v in teacher[:3])
            t_preds = flatten_levels(list(teacher[3:len(teacher) - center]))
            groups = (s_cls, s_reg, t_cls, t_reg, t_scores, t_preds)
            if center:
                groups += (flatten_levels(teacher[-1]),)
            ok = all(x.dim() == 4 for g in groups for x in g)
        if not ok:
            raise ValueError('CrossKD reads the student\'s crossing features [cls, reg] and the '
                             "teacher's [cls, reg, cls_scores, bbox_preds...] (ATSS: then its "
                             f'centernesses), one value per FPN level: {BLOCK} (RetinaNet, '
                             'ATSS, FCOS: see the CrossKD docs).')
        if len({len(g) for g in groups}) != 1:
            raise ValueError(f'CrossKD: the values give {[len(g) for g in groups]} levels '
                             '(student cls, reg; teacher cls, reg, scores, box predictions'
                             f'{", centernesses" if center else ""}); they must be equal: '
                             f'{BLOCK}.')
        for lvl in range(len(s_cls)):
            for name, s, t in (('cls', s_cls[lvl], t_cls[lvl]), ('reg', s_reg[lvl], t_reg[lvl])):
                if s.shape != t.shape:
                    raise ValueError(
                        f'CrossKD: level {lvl} {name} crossing features: student '
                        f'{tuple(s.shape)}, teacher {tuple(t.shape)}; they must be equal (the '
                        'heads need the same feat_channels and strides: the authors pair '
                        'heads of one width).')
                if s.shape[-2:] != t_scores[lvl].shape[-2:]:
                    raise ValueError(f'CrossKD: level {lvl}: crossing features '
                                     f'{tuple(s.shape)} and teacher scores '
                                     f'{tuple(t_scores[lvl].shape)} differ in size.')
        return groups

    def _check_pre_activation(self, groups) -> None:
        if self.idx == 0 or not self.pre_activation:
            return
        for side, tensors in (('student', groups[0] + groups[1]),
                              ('teacher', groups[2] + groups[3])):
            for x in tensors:
                try:
                    version = x._version
                except RuntimeError:  # inference-mode tensors have no version counter
                    continue
                if version != 0:
                    raise ValueError(
                        f'CrossKD: a {side} crossing feature was modified in place after it '
                        f'was recorded (version {version}): it holds post-activation values. '
                        'Record the pre-activation output of the ConvModule at the crossing '
                        f"(its norm, e.g. '{self.head_name}.cls_convs.{self.idx - 1}.gn', or "
                        "its 'conv' without a norm): with pre_activation=True CrossKD makes "
                        "that ConvModule's ReLU out of place when it is bound.")

    def build(self, student, teacher) -> None:
        groups = self._split(student, teacher)
        self._check_pre_activation(groups)
        head = self.student_head
        n_levels = head.prior_generator.num_levels
        if len(groups[0]) != n_levels:
            raise ValueError(f'CrossKD: {len(groups[0])} levels recorded, the student head has '
                             f'{n_levels} prior levels.')
        super().build(student, teacher)

    def box_pred(self, pred: torch.Tensor, lvl: int) -> torch.Tensor:
        """A scaled box prediction (a ``scales[l]`` output) as the head returns it: GFL, ATSS,
        FCOS: the authors' (and the heads') ``.float()``, an fp16 -> fp32 upcast under AMP
        (float64 stays float64); FCOS: then ``exp``, or with ``norm_on_bbox`` the clamp at 0
        and, the teacher head being in eval mode, the stride (their ``reuse_teacher_head``
        reads the teacher's ``training`` flag)."""
        if self.kind == 'retina':
            return pred
        pred = at_least_float32(pred)
        if self.kind != 'fcos':
            return pred
        head = self._models['teacher']
        if not head.norm_on_bbox:
            return pred.exp()
        pred = pred.clamp(min=0)
        return pred if head.training else pred * head.strides[lvl]

    def cross_head(self, s_cls: List[torch.Tensor], s_reg: List[torch.Tensor],
                   t_cls: List[torch.Tensor], t_reg: List[torch.Tensor]):
        """The authors' ``reuse_teacher_head`` on every level: (cls scores, bbox preds,
        centernesses: ATSS only, else an empty list)."""
        scores, preds, centers = [], [], []
        post = self.idx != 0 and not self.pre_activation
        for lvl, (sc, sr, tc, tr) in enumerate(zip(s_cls, s_reg, t_cls, t_reg)):
            if post:  # what the authors' held tensors hold after the in-place ReLU
                sc, sr, tc, tr = F.relu(sc), F.relu(sr), F.relu(tc), F.relu(tr)
            xc, xr = align_scale(sc, tc.detach()), align_scale(sr, tr.detach())
            if self.idx != 0:
                xc, xr = F.relu(xc), F.relu(xr)
            scores.append(self.paths['cls'](xc, level=lvl))
            if 'reg_convs' in self.paths:
                xr = self.paths['reg_convs'](xr)
            preds.append(self.box_pred(self.paths['reg'](xr, level=lvl), lvl))
            if 'center' in self.paths:
                centers.append(self.paths['center'](xr))
        return scores, preds, centers

    # -- loss -----------------------------------------------------------------------------
    def forward(self, student, teacher, data_samples=None) -> Dict[str, torch.Tensor]:
        from mmdet.models.utils import unpack_gt_instances
        groups = self._split(student, teacher)
        self._check_pre_activation(groups)
        s_cls, s_reg, t_cls, t_reg, t_scores, t_preds = groups[:6]
        if not data_samples or not all('gt_instances' in s for s in data_samples):
            raise ValueError('CrossKD needs the ground-truth boxes (the student head\'s '
                             'assignment weighs the KD): detection data samples with '
                             'gt_instances.')
        head = self.student_head
        cross_scores, cross_preds, cross_centers = self.cross_head(s_cls, s_reg, t_cls, t_reg)
        gts, ignores, metas = unpack_gt_instances(data_samples)
        t_scores = [x.detach() for x in t_scores]
        t_preds = [self.box_pred(x.detach(), lvl) for lvl, x in enumerate(t_preds)]
        if self.kind == 'fcos':
            return self._fcos_losses(cross_scores, cross_preds, t_scores, t_preds, gts)
        device = s_cls[0].device
        anchors, valid = head.get_anchors([x.shape[-2:] for x in t_scores], metas,
                                          device=device)
        targets = head.get_targets(anchors, valid, gts, metas, batch_gt_instances_ignore=ignores)
        if self.kind == 'gfl':
            return self._gfl_losses(cross_scores, cross_preds, t_scores, t_preds, targets)
        if self.kind == 'atss':
            t_centers = [x.detach() for x in groups[6]]
            return self._atss_losses(cross_scores, cross_preds, cross_centers, t_scores,
                                     t_preds, t_centers, targets)
        return self._retina_losses(cross_scores, cross_preds, t_scores, t_preds, anchors,
                                   targets)

    def _cls_kd(self, cross, t_score, label_weights, avg_factor):
        c = self.student_head.cls_out_channels
        pred = cross.permute(0, 2, 3, 1).reshape(-1, c)
        soft = t_score.permute(0, 2, 3, 1).reshape(-1, c)
        loss = self.loss_cls_kd(pred, soft.sigmoid().to(pred.dtype),
                                weight=label_weights.reshape(-1), avg_factor=avg_factor)
        # The teacher's confidence per anchor (authors: max, then sigmoid), 0 where ignored.
        weights = soft.max(dim=1)[0].sigmoid()
        weights = weights.masked_fill(label_weights.reshape(-1) == 0, 0)
        return loss, weights

    def _gfl_losses(self, cross_scores, cross_preds, t_scores, t_preds, targets):
        from mmdet.utils import reduce_mean
        label_weights, avg_factor = targets[2], targets[5]
        device = cross_scores[0].device
        avg_factor = reduce_mean(torch.tensor(avg_factor, dtype=torch.float,
                                              device=device)).item()
        bins = self.student_head.reg_max + 1
        loss_cls, loss_reg, reg_factor = 0, 0, 0
        for cross, cross_box, t_score, t_box, lab_w in zip(cross_scores, cross_preds, t_scores,
                                                           t_preds, label_weights):
            cls_kd, weights = self._cls_kd(cross, t_score, lab_w, avg_factor)
            pred = cross_box.permute(0, 2, 3, 1).reshape(-1, bins)
            soft = t_box.permute(0, 2, 3, 1).reshape(-1, bins)
            # mmdet's KL averages over the bins; the authors' (class_reduction='sum') sums.
            reg_kd = bins * self.loss_kl(pred, soft.to(pred.dtype),
                                         weight=weights[:, None].expand(-1, 4).reshape(-1),
                                         avg_factor=4.0)
            loss_cls, loss_reg = loss_cls + cls_kd, loss_reg + reg_kd
            reg_factor = reg_factor + weights.sum()
        return dict(loss_cls_kd=self.loss_cls_weight * loss_cls,
                    loss_reg_kd=self.loss_reg_weight * loss_reg / reg_factor)

    def _retina_losses(self, cross_scores, cross_preds, t_scores, t_preds, anchors, targets):
        from mmdet.models.utils import images_to_levels
        from mmdet.structures.bbox import cat_boxes
        label_weights, avg_factor = targets[1], targets[4]
        num_level_anchors = [a.size(0) for a in anchors[0]]
        level_anchors = images_to_levels([cat_boxes(a) for a in anchors], num_level_anchors)
        coder = self.student_head.bbox_coder
        loss_cls, loss_reg = 0, 0
        for cross, cross_box, t_score, t_box, lab_w, anc in zip(
                cross_scores, cross_preds, t_scores, t_preds, label_weights, level_anchors):
            cls_kd, weights = self._cls_kd(cross, t_score, lab_w, avg_factor)
            anc = anc.reshape(-1, anc.size(-1))
            size = coder.encode_size
            pred = get_box(coder.decode(anc, cross_box.permute(0, 2, 3, 1).reshape(-1, size)))
            soft = get_box(coder.decode(anc, t_box.permute(0, 2, 3, 1).reshape(-1, size)))
            reg_kd = self.loss_giou(pred, soft.to(pred.dtype), weights, avg_factor=avg_factor)
            loss_cls, loss_reg = loss_cls + cls_kd, loss_reg + reg_kd
        return dict(loss_cls_kd=self.loss_cls_weight * loss_cls,
                    loss_reg_kd=self.loss_reg_weight * loss_reg)

    def _atss_losses(self, cross_scores, cross_preds, cross_centers, t_scores, t_preds,
                     t_centers, targets):
        """The authors' ``CrossKDATSS.pred_imitation_loss_single`` summed over the levels:
        the classification KD and the GIoU box KD as for RetinaNet (the student's anchors,
        its ``DeltaXYWHBBoxCoder``), and the centerness KD: BCE of the cross centerness
        logits against the sigmoid of the teacher's, on the student's positive anchors,
        divided by ``avg_factor`` (0 on a level without positives)."""
        from mmdet.utils import reduce_mean
        anchors, labels, label_weights, avg_factor = (targets[0], targets[1], targets[2],
                                                      targets[5])
        device = cross_scores[0].device
        avg_factor = reduce_mean(torch.tensor(avg_factor, dtype=torch.float,
                                              device=device)).item()
        head = self.student_head
        coder = head.bbox_coder
        loss_cls, loss_reg, loss_center = 0, 0, 0
        for cross, cross_box, cross_ctr, t_score, t_box, t_ctr, lab, lab_w, anc in zip(
                cross_scores, cross_preds, cross_centers, t_scores, t_preds, t_centers, labels,
                label_weights, anchors):
            cls_kd, weights = self._cls_kd(cross, t_score, lab_w, avg_factor)
            anc = anc.reshape(-1, anc.size(-1))
            size = coder.encode_size
            pred = get_box(coder.decode(anc, cross_box.permute(0, 2, 3, 1).reshape(-1, size)))
            soft = get_box(coder.decode(anc, t_box.permute(0, 2, 3, 1).reshape(-1, size)))
            reg_kd = self.loss_giou(pred, soft.to(pred.dtype), weights, avg_factor=avg_factor)
            lab = lab.reshape(-1)
            pos = ((lab >= 0) & (lab < head.num_classes)).nonzero().squeeze(1)
            ctr = cross_ctr.permute(0, 2, 3, 1).reshape(-1)
            if len(pos) > 0:
                t_ctr = t_ctr.permute(0, 2, 3, 1).reshape(-1)
                center_kd = self.loss_center_kd(ctr[pos], t_ctr[pos].sigmoid(),
                                                avg_factor=avg_factor)
            else:
                center_kd = ctr.new_tensor(0.)
            loss_cls, loss_reg = loss_cls + cls_kd, loss_reg + reg_kd
            loss_center = loss_center + center_kd
        return dict(loss_cls_kd=self.loss_cls_weight * loss_cls,
                    loss_reg_kd=self.loss_reg_weight * loss_reg,
                    loss_center_kd=self.loss_center_weight * loss_center)

    def _fcos_losses(self, cross_scores, cross_preds, t_scores, t_preds, gts):
        """The authors' ``CrossKDFCOS.loss_by_feat`` KD terms: over all points of all levels
        (no label weights), the classification KD and the IoU KD of the boxes decoded at the
        student's points (weights: the teacher's confidence), both divided by the student
        loss's centerness denominator max(reduce_mean(sum of the positives' centerness
        targets), 1e-6)."""
        from mmdet.utils import reduce_mean
        head = self.student_head
        c = head.cls_out_channels
        points = head.prior_generator.grid_priors([x.shape[-2:] for x in cross_scores],
                                                  dtype=cross_preds[0].dtype,
                                                  device=cross_preds[0].device)
        labels, bbox_targets = head.get_targets(points, gts)
        num_imgs = cross_scores[0].size(0)

        def flat(xs, width):
            return torch.cat([x.permute(0, 2, 3, 1).reshape(-1, width) for x in xs])

        labels, bbox_targets = torch.cat(labels), torch.cat(bbox_targets)
        points = torch.cat([p.repeat(num_imgs, 1) for p in points])
        pos = ((labels >= 0) & (labels < head.num_classes)).nonzero().reshape(-1)
        center_targets = head.centerness_target(bbox_targets[pos])
        denorm = max(reduce_mean(center_targets.sum().detach()), 1e-6)
        cross, soft = flat(cross_scores, c), flat(t_scores, c)
        loss_cls = self.loss_cls_kd(cross, soft.sigmoid().to(cross.dtype), avg_factor=denorm)
        coder = head.bbox_coder
        pred = coder.decode(points, flat(cross_preds, 4))
        target = coder.decode(points, flat(t_preds, 4)).to(pred.dtype)
        weights = soft.max(dim=1)[0].sigmoid()
        loss_reg = self.loss_iou(pred, target, weight=weights, avg_factor=denorm)
        return dict(loss_cls_kd=self.loss_cls_weight * loss_cls,
                    loss_reg_kd=self.loss_reg_weight * loss_reg)
