"""Base classes for distillation methods.

A method is an ``nn.Module`` that owns whatever a KD method needs between the two models
(projectors, connectors, denoisers...) and turns recorded student/teacher tensors into a dict of
named losses. Methods never state channel numbers in configs: the distiller runs both models
once on a dummy batch at construction time and calls :meth:`BaseDistillMethod.build` with the
recorded tensors, so all parameters exist before the optimizer and DDP wrapper are created.
"""
from typing import Dict, List, Literal, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule

from ..utils.arguments import InitCfg, bind_arguments, check_arguments

Features = Union[torch.Tensor, Sequence[torch.Tensor]]


class BaseDistillMethod(BaseModule):
    """Interface of a distillation method.

    Subclasses implement :meth:`build` (create sub-modules from example tensors) and
    :meth:`forward` (return ``{'loss_x': tensor, ...}``; keys without 'loss' are logged only).
    ``data_samples`` is passed for methods that need labels or boxes.

    Arguments are declared, not checked by hand: the annotations of a method's ``__init__``
    (:mod:`mmkd.utils.arguments`: ``tau: PositiveFloat = 1.0``, ``Literal['auto', 'none']``)
    are its schema, and every construction checks the given values against it before
    ``__init__`` runs (the distiller first, naming the block), so a wrong type or an
    impossible value fails at build naming the argument.

    Args:
        init_cfg (dict | list[dict], optional): MMEngine's initialisation config of the
            method's own modules (projectors, connectors, generators), applied by
            ``init_weights()``. Default None: each module's own initialisation.
    """

    def __new__(cls, *args, **kwargs):
        arguments = bind_arguments(cls, args, kwargs)
        if arguments is not None:  # else __init__ raises Python's own error
            check_arguments(cls, arguments)
        return super().__new__(cls)

    def __init__(self, init_cfg: InitCfg = None):
        super().__init__(init_cfg=init_cfg)
        self.built = False

    def build(self, student: Features, teacher: Features) -> None:
        self.built = True

    def bind_student(self, student: nn.Module) -> None:
        """Called once with the student model, before the dry run, for a method that needs
        one of the student's own modules (LD reuses the detection head's label assignment).
        Keep what you take out of ``nn.Module`` attributes (e.g. in a dict) so the student's
        parameters are not registered twice. Default: nothing."""

    def bind_teachers(self, teachers: Dict[str, nn.Module]) -> None:
        """Called once with the teacher models this block reads (``{name: model}``, in the
        order of the block's teacher points), after :meth:`bind_student` and before the dry
        run, for a method that needs a teacher's own modules or statistics (OFD reads the
        BatchNorm statistics before the ReLU). Teachers are frozen: read them, do not keep
        them as sub-modules (keep them in a dict or a tuple). Default: nothing."""

    def forward(self, student: Features, teacher: Features,
                data_samples=None) -> Dict[str, torch.Tensor]:
        raise NotImplementedError


def flatten_levels(x: Features) -> List[torch.Tensor]:
    """A tensor is one level; a (nested) tuple/list of tensors is several, in order."""
    if isinstance(x, torch.Tensor):
        return [x]
    if isinstance(x, (tuple, list)):
        out = []
        for item in x:
            out.extend(flatten_levels(item))
        return out
    raise TypeError(f'Expected a tensor or a tuple/list of tensors, got {type(x).__name__}.')


class LevelwiseMethod(BaseDistillMethod):
    """A method applied independently to each level of multi-level features.

    A recorded value may be a tensor or a tuple of tensors (FPN levels, several record points,
    a head called once per level). Student and teacher must give the same number of levels.
    Subclasses implement :meth:`build_level` (the connector for one (student, teacher) pair, or
    ``None``) and :meth:`level_loss`.

    Args:
        share_levels (bool): one connector shared by all levels (needs equal shapes across
            levels) instead of one per level. Default False.
        level_reduction (str): 'sum' (default; each FPN level counts as its own loss term, as
            detection KD methods usually do) or 'mean'. Logged diagnostics (keys without
            'loss') are averaged over levels either way.
    """

    def __init__(self, share_levels: bool = False, level_reduction: Literal['sum', 'mean'] = 'sum',
                 init_cfg: InitCfg = None):
        super().__init__(init_cfg=init_cfg)
        self.share_levels = share_levels
        self.level_reduction = level_reduction
        self.connectors = nn.ModuleList()

    def _pairs(self, student: Features, teacher: Features):
        s_levels, t_levels = flatten_levels(student), flatten_levels(teacher)
        if len(s_levels) != len(t_levels):
            raise ValueError(f'{type(self).__name__}: student gives {len(s_levels)} levels but '
                             f'teacher gives {len(t_levels)}; record matching points or index '
                             'one level (e.g. "neck[0]").')
        return list(zip(s_levels, t_levels))

    def build(self, student: Features, teacher: Features) -> None:
        pairs = self._pairs(student, teacher)
        if self.share_levels:
            shapes = {(s.shape[1], t.shape[1]) for s, t in pairs}
            if len(shapes) > 1:
                raise ValueError(f'{type(self).__name__}: share_levels=True needs the same '
                                 f'channels on every level, got (student, teacher) = {shapes}.')
            pairs = pairs[:1]
        for s, t in pairs:
            conn = self.build_level(s, t)
            self.connectors.append(conn if conn is not None else nn.Identity())
        super().build(student, teacher)

    def build_level(self, student: torch.Tensor, teacher: torch.Tensor) -> Optional[nn.Module]:
        return None

    def level_loss(self, student: torch.Tensor, teacher: torch.Tensor, connector: nn.Module,
                   data_samples=None) -> Dict[str, torch.Tensor]:
        raise NotImplementedError

    def forward(self, student: Features, teacher: Features,
                data_samples=None) -> Dict[str, torch.Tensor]:
        total: Dict[str, torch.Tensor] = {}
        pairs = self._pairs(student, teacher)
        for i, (s, t) in enumerate(pairs):
            conn = self.connectors[0 if self.share_levels else i]
            for k, v in self.level_loss(s, t, conn, data_samples).items():
                total[k] = total[k] + v if k in total else v
        # Diagnostics (keys without 'loss', e.g. DiffKD's gamma) are always averaged over levels.
        return {k: v / len(pairs) if self.level_reduction == 'mean' or 'loss' not in k else v
                for k, v in total.items()}


def pool_to_smaller(a: torch.Tensor, b: torch.Tensor):
    """Adaptive-average-pool whichever of two maps (N, C, H, W) is taller to the other's
    (H, W) (RepDistiller's ``adaptive_avg_pool2d(x, (t_H, t_H))`` on square maps: VID, NST,
    FT); maps of one height are returned as they are."""
    if a.shape[2] > b.shape[2]:
        a = F.adaptive_avg_pool2d(a, b.shape[2:])
    elif a.shape[2] < b.shape[2]:
        b = F.adaptive_avg_pool2d(b, a.shape[2:])
    return a, b


def resize_like(x: torch.Tensor, ref: torch.Tensor, mode: str = 'bilinear') -> torch.Tensor:
    """Resize the spatial dims of ``x`` (N, C, *S) to those of ``ref`` when they differ."""
    if x.dim() <= 2 or x.shape[2:] == ref.shape[2:]:
        return x
    return F.interpolate(x, size=ref.shape[2:], mode=mode, align_corners=False)


def gt_labels(data_samples, batch: int, device, method: str) -> torch.Tensor:
    """(B,) class indices from mmpretrain data samples' ``gt_label`` (the first label of each;
    ``method`` names who needs them in the error)."""
    if data_samples is None or len(data_samples) != batch or not all(
            getattr(s, 'gt_label', None) is not None for s in data_samples):
        raise ValueError(f'{method} needs the ground-truth labels: data samples with '
                         f'gt_label, one per image (got {data_samples!r:.80}).')
    return torch.cat([torch.as_tensor(s.gt_label).reshape(-1)[:1] for s in data_samples]).to(
        device=device, dtype=torch.long)
