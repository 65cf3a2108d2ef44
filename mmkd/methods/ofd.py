"""OFD: a comprehensive overhaul of feature distillation (Heo, Kim, Yun, Park, Kwak, Choi,
ICCV 2019).

The student's pre-ReLU features, through a connector, regress the teacher's pre-ReLU features
with a *partial* L2 loss: negative teacher responses only matter down to a per-channel margin
(the expected value of the teacher's negative responses), and a student response below a
non-positive teacher response is not penalised (the ReLU after it would hide the difference)::

    levels i = 0..L-1 (record points, shallow to deep; a tuple of points is several levels)
    student   s_i (N, Cs_i, H_i, W_i) pre-ReLU     teacher t_i (N, Ct_i, H'_i, W'_i) pre-ReLU
    connector r_i = BN(conv1x1(s_i))                               (N, Ct_i, H_i, W_i)
    t_i    -> adaptive average pool to (H_i, W_i) when the sizes differ (mdistiller)
    margin m_i (Ct_i,) from the teacher BN b_i that produces t_i, from its affine parameters
          (BN output ~ N(beta, gamma^2) per channel: mean = beta, std = |gamma|):
          m = E[x | x < 0] = beta - |gamma| phi(beta/|gamma|) / Phi(-beta/|gamma|)
              when Phi(-beta/|gamma|) > 0.001, else -3 |gamma|
    target  T = max(t_i, m_i)                                      (N, Ct_i, H_i, W_i)
    d_i     = sum over (N, C, H, W) of (r_i - T)^2 * [(r_i > T) or (T > 0)]   / N
    loss    = sum_i d_i * level_weight_i,  level_weight_i = 2^-(L-1-i) by default

The teacher side carries no gradient. The block's ``loss_weight`` carries the authors' final
scale: their CIFAR-100 script adds ``loss_distill.sum() / batch_size / 1000`` to the CE, the
ImageNet one ``/ 10000`` (mdistiller: ``FEAT_WEIGHT`` 0.001 on CIFAR-100, 0.0001 on ImageNet);
this method returns the ``/ batch_size`` value, so the configs give ``loss_weight`` 1e-3 or
1e-4.

**Margin from the teacher's BN parameters, not its running statistics.** The authors'
``get_margin_from_BN`` (clovaai/overhaul-distillation ``CIFAR-100/distiller.py`` at 76344a8,
identical in ``ImageNet/distiller.py``; mdistiller ``distillers/OFD.py`` at a08d46f; MMRazor
``models/distillers/ofd_distiller.py`` at 0fe347f, which takes the BN from the teacher record
point's own module name) reads
``bn.weight`` as the std and ``bn.bias`` as the mean of the BN's *output*, which is what the
ReLU sees; the running mean/var describe the BN's *input* and do not enter. We follow them:
the margin is computed from the bound teacher's BN modules, named by ``teacher_bns`` (one per
level), at every forward (C values; it follows a checkpoint loaded after construction), in
float64 as ``torch.special.ndtr`` (the authors: scipy ``norm.cdf`` in float64, then float32).
A BN with weight 0 (which the authors' code divides by) is given a floor of 1e-12.

**Record points: pre-ReLU tensors.** Hooks record module outputs; a tensor that a later
in-place op overwrites (``out += identity``, ``ReLU(inplace=True)``) is read after the
overwrite. In mmpretrain's ``ResNet`` ``BasicBlock`` the output of ``bn2`` is the tensor that
``out += identity`` and the in-place ReLU then overwrite, so recording it gives the block's
*post*-ReLU output; the same holds for ``CifarWideResNet``'s ``final_norm.0``. The method checks
each recorded tensor's in-place version counter (``check_inplace``) and fails naming the
level. Two ways to record pre-ReLU features:

* ``apply_bn=False`` (default): the record points *are* pre-ReLU BN outputs that nothing
  overwrites: ``CifarWideResNet``'s ``layer2.0.bn1`` / ``layer3.0.bn1`` (the authors' WRN
  features exactly: the next block's ``bn1`` applied to a stage's output); ``CifarResNet``'s
  ``layer{k}.{j}.bn2`` (its residual sum is a new tensor).
* ``apply_bn=True``: the record points are the *inputs* of the BN modules (``'...bn2@input'``,
  the conv output, never overwritten) and the method applies the BNs itself: the teacher's
  ``teacher_bns`` and the student's ``student_bns``, each with the statistics its own forward
  used (batch statistics in training mode, without updating the running ones a second time;
  running statistics in eval mode), so the values and gradients equal that BN's output. With
  SyncBN the re-application uses the local batch's statistics.

In ResNets the authors' pre-ReLU feature is the block's residual sum ``bn2(.) + identity``
with the margin of ``bn2`` (their ResNets drop the block's final ReLU and apply it at the next
block's input); neither recording way gives that sum for our ResNets without changing their
blocks, so ResNet configs here distil the ``bn2`` output (the tensor whose Gaussian the margin
describes) instead. Said in each config.
"""
import difflib
import math
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..registry import MODELS
from ..utils.arguments import NonNegativeFloat
from .base import BaseDistillMethod, Features, flatten_levels

_BN = nn.modules.batchnorm._BatchNorm


def margin_from_bn(weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """(C,) expected value of the negative part of N(bias, |weight|^2), per channel: the
    authors' ``get_margin_from_BN`` in float64 (``-3 |weight|`` where the negative mass
    Phi(-bias/|weight|) is at most 0.001)."""
    s = weight.detach().double().abs().clamp(min=1e-12)
    m = bias.detach().double()
    cdf = torch.special.ndtr(-m / s)
    expect = -s * torch.exp(-(m / s) ** 2 / 2) / math.sqrt(2 * math.pi) / cdf.clamp(
        min=1e-300) + m
    return torch.where(cdf > 0.001, expect, -3 * s)


def ofd_partial_l2(student: torch.Tensor, teacher: torch.Tensor,
                   margin: torch.Tensor) -> torch.Tensor:
    """The partial L2 distance summed over (N, C, H, W) and divided by N (module docstring);
    ``margin`` (C,) is broadcast over (N, C, H, W)."""
    target = torch.max(teacher, margin.view(1, -1, *([1] * (teacher.dim() - 2))))
    mask = (student > target) | (target > 0)
    return ((student - target) ** 2 * mask.to(student.dtype)).sum() / student.shape[0]


def _apply_bn(bn: _BN, x: torch.Tensor) -> torch.Tensor:
    """``bn``'s output on ``x`` as its own forward computes it, without touching its running
    statistics (batch statistics when it uses them, running ones otherwise)."""
    use_batch = bn.training or bn.running_mean is None
    return F.batch_norm(x, None if use_batch else bn.running_mean,
                        None if use_batch else bn.running_var, bn.weight, bn.bias,
                        use_batch, 0.0, bn.eps)


def _bn_choices(model: nn.Module, name: str, side: str) -> str:
    """The BN modules of ``model`` for an error message: all of them when few, else the ones
    closest to ``name`` and the count."""
    valid = [n for n, m in model.named_modules() if isinstance(m, _BN)]
    if len(valid) <= 20:
        return f'the {side}\'s BatchNorm modules are: {", ".join(valid) or "(none)"}.'
    close = difflib.get_close_matches(name, valid, n=8, cutoff=0.0)
    return (f'the {side} has {len(valid)} BatchNorm modules; the closest are: '
            f'{", ".join(close)}.')


def _connector(s_channels: int, t_channels: int) -> nn.Sequential:
    """conv1x1 (no bias) + BN, the authors' ``build_feature_connector`` and initialisation."""
    conv = nn.Conv2d(s_channels, t_channels, 1, 1, 0, bias=False)
    nn.init.normal_(conv.weight, 0.0, math.sqrt(2.0 / t_channels))  # n = k * k * out
    bn = nn.BatchNorm2d(t_channels)
    nn.init.ones_(bn.weight)
    nn.init.zeros_(bn.bias)
    return nn.Sequential(conv, bn)


@MODELS.register_module()
class OFD(BaseDistillMethod):
    """Overhaul of feature distillation: partial L2 between the connected student and the
    teacher's pre-ReLU features, teacher features clipped from below at a margin read from the
    teacher's BatchNorm (module docstring).

    Args:
        teacher_bns (sequence of str): for each level (record point, in order), the name of
            the teacher's BatchNorm module whose output is that level's pre-ReLU feature (e.g.
            ``'backbone.layer2.0.bn1'``); its weight and bias give the margin. Required: a
            missing or non-BN module is an error naming it and the BN modules there are.
        student_bns (sequence of str, optional): the student's BN modules, one per level;
            used (and required) only with ``apply_bn``. Default None.
        apply_bn (bool): the record points are the BN modules' *inputs* and the method applies
            ``teacher_bns`` / ``student_bns`` to them (for backbones whose BN output is
            overwritten in place, e.g. mmpretrain's ResNet). Default False: the record points
            are the pre-ReLU tensors themselves.
        level_weights (sequence of float, optional): weight of each level's distance. Default
            None: ``2^-(L-1-i)`` for level i of L, the authors' ``/ 2 ** (feat_num - i - 1)``.
        check_inplace (bool): fail when a recorded tensor was modified in place after it was
            recorded (its version counter is not 0), which means it no longer holds the
            pre-ReLU values. Default True.

    Block: student and teacher record points giving the same number of (N, C, H, W) levels,
    the same batch; channels free (a conv1x1 + BN connector per level, built from the dry
    run); the teacher's spatial size is average-pooled to the student's when they differ
    (mdistiller). Give ``loss_weight`` 1e-3 (CIFAR) or 1e-4 (ImageNet), the authors' scale.
    Returns ``loss_ofd`` (the sum over levels of the weighted distances, each summed over
    elements and divided by the batch) and ``ofd_margin`` (mean margin over channels and
    levels, logged).

    References:
        Paper: Heo, Kim, Yun, Park, Kwak, Choi, "A Comprehensive Overhaul of Feature
            Distillation", ICCV 2019 (arXiv 1904.01866).
        Code: the authors', https://github.com/clovaai/overhaul-distillation
            (``CIFAR-100/distiller.py``: ``distillation_loss``, ``build_feature_connector``,
            ``get_margin_from_BN``; ``CIFAR-100/train_with_distillation.py``: ``/ batch_size /
            1000``), and https://github.com/megvii-research/mdistiller
            (``distillers/OFD.py``); MMRazor's port, https://github.com/open-mmlab/mmrazor
            (``models/losses/ofd_loss.py``, ``models/distillers/ofd_distiller.py``,
            ``OFDTeacherConnector``: the same loss with ``mul_factor`` 1000).
    """

    def __init__(self, teacher_bns: Sequence[str], student_bns: Optional[Sequence[str]] = None,
                 apply_bn: bool = False,
                 level_weights: Optional[Sequence[NonNegativeFloat]] = None,
                 check_inplace: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.teacher_bns = list(teacher_bns)
        self.student_bns = None if student_bns is None else list(student_bns)
        self.apply_bn, self.check_inplace = apply_bn, check_inplace
        self.level_weights = None if level_weights is None else [float(w) for w in level_weights]
        if not self.teacher_bns:
            raise ValueError('OFD argument teacher_bns must name at least one BN module.')
        if apply_bn and self.student_bns is None:
            raise ValueError('OFD: apply_bn=True re-applies the BNs to the recorded BN inputs '
                             'on both sides; give student_bns (one per level) too.')
        for name, names in (('student_bns', self.student_bns),
                            ('level_weights', self.level_weights)):
            if names is not None and len(names) != len(self.teacher_bns):
                raise ValueError(f'OFD: {name} has {len(names)} entries but teacher_bns has '
                                 f'{len(self.teacher_bns)}; give one per level.')
        self._models: Dict[str, nn.Module] = {}  # not sub-modules: never registered twice
        self.connectors = nn.ModuleList()

    # -- bound models ----------------------------------------------------------------------
    def bind_student(self, student: nn.Module) -> None:
        self._models['student'] = student
        if self.apply_bn:
            self._bns('student')  # fail at build on a wrong name

    def bind_teachers(self, teachers: Dict[str, nn.Module]) -> None:
        if len(teachers) != 1:
            raise ValueError(f'OFD reads one teacher\'s BNs; the block reads {len(teachers)} '
                             f'teachers ({list(teachers)}).')
        self._models['teacher'] = next(iter(teachers.values()))
        self._bns('teacher')

    def _bns(self, side: str) -> List[_BN]:
        """The BN modules of one side, looked up by name in the bound model at each call (so a
        module swapped after binding, e.g. by SyncBN conversion, is the one read)."""
        model = self._models.get(side)
        if model is None:
            raise RuntimeError(f'OFD: bind_{side}{"s" if side == "teacher" else ""}() was not '
                               'called (the Distiller calls it before the dry run).')
        names = self.teacher_bns if side == 'teacher' else self.student_bns
        bns, modules = [], dict(model.named_modules())
        for name in names:
            module = modules.get(name)
            if not isinstance(module, _BN):
                what = ('not a module of it' if module is None else
                        f'a {type(module).__name__}, not a BatchNorm')
                raise ValueError(f'OFD: {side}_bns names {name!r}, {what}; '
                                 f'{_bn_choices(model, name, side)}')
            bns.append(module)
        return bns

    def margins(self) -> List[torch.Tensor]:
        """(C_i,) float64 margin of each level, from the bound teacher's BNs."""
        return [margin_from_bn(bn.weight, bn.bias) for bn in self._bns('teacher')]

    # -- build / forward -------------------------------------------------------------------
    def _levels(self, student: Features, teacher: Features):
        s, t = flatten_levels(student), flatten_levels(teacher)
        if not len(s) == len(t) == len(self.teacher_bns):
            raise ValueError(f'OFD: student gives {len(s)} levels, teacher {len(t)}, '
                             f'teacher_bns names {len(self.teacher_bns)}; they must match.')
        for i, (a, b) in enumerate(zip(s, t)):
            if a.dim() != 4 or b.dim() != 4 or a.shape[0] != b.shape[0]:
                raise ValueError(f'OFD level {i}: needs (N, C, H, W) maps of one batch, got '
                                 f'student {tuple(a.shape)} and teacher {tuple(b.shape)}.')
            if self.check_inplace:
                for side, x in (('student', a), ('teacher', b)):
                    if x._version != 0:
                        raise ValueError(
                            f'OFD level {i}: the {side} tensor was modified in place after '
                            f'it was recorded (version {x._version}), so it holds the values '
                            'after e.g. "out += identity" or ReLU(inplace=True), not the '
                            'pre-ReLU feature. Record a tensor nothing overwrites, or the BN '
                            "input ('...bn2@input') with apply_bn=True (see the OFD docs).")
        return s, t

    def build(self, student: Features, teacher: Features) -> None:
        s, t = self._levels(student, teacher)
        t_bns = self._bns('teacher')
        s_bns = self._bns('student') if self.apply_bn else [None] * len(s)
        for i, (a, b, tbn, sbn) in enumerate(zip(s, t, t_bns, s_bns)):
            if tbn.num_features != b.shape[1]:
                raise ValueError(f'OFD level {i}: teacher BN {self.teacher_bns[i]!r} has '
                                 f'{tbn.num_features} channels, the teacher feature '
                                 f'{b.shape[1]}; name the BN that produces this feature.')
            if sbn is not None and sbn.num_features != a.shape[1]:
                raise ValueError(f'OFD level {i}: student BN {self.student_bns[i]!r} has '
                                 f'{sbn.num_features} channels, the student feature '
                                 f'{a.shape[1]}.')
            self.connectors.append(_connector(a.shape[1], b.shape[1]))
        super().build(student, teacher)

    def forward(self, student: Features, teacher: Features,
                data_samples=None) -> Dict[str, torch.Tensor]:
        s, t = self._levels(student, teacher)
        num = len(s)
        weights = self.level_weights or [2.0 ** -(num - 1 - i) for i in range(num)]
        t_bns = self._bns('teacher')
        s_bns = self._bns('student') if self.apply_bn else None
        margins = [margin_from_bn(bn.weight, bn.bias) for bn in t_bns]
        loss, margin_sum = 0.0, 0.0
        for i in range(num):
            si, ti = s[i], t[i].detach()
            if self.apply_bn:
                si = _apply_bn(s_bns[i], si)
                with torch.no_grad():
                    ti = _apply_bn(t_bns[i], ti)
            r = self.connectors[i](si)
            dtype = torch.promote_types(r.dtype, torch.float32)  # float32 under AMP
            r, ti = r.to(dtype), ti.to(dtype)
            if ti.shape[2:] != r.shape[2:]:
                ti = F.adaptive_avg_pool2d(ti, r.shape[2:])
            loss = loss + weights[i] * ofd_partial_l2(r, ti, margins[i].to(r))
            margin_sum = margin_sum + margins[i].mean()
        return dict(loss_ofd=loss, ofd_margin=(margin_sum / num).to(r))
