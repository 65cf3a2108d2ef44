"""A teacher path: a student value fed through frozen teacher modules (head sharing).

Most KD methods compare a student value with a teacher value, each recorded in its own model.
*Head-sharing* methods instead run a **student** value through part of the **teacher**: CrossKD
(Wang et al., CVPR 2024) feeds the student's intermediate head features into the teacher's
remaining head and supervises that "cross-head" output with the teacher's own predictions;
SimKD ("Knowledge Distillation with the Reused Teacher Classifier", Chen et al., CVPR 2022)
runs the student's features through the teacher's classifier. The mechanism they share is
this small object::

    student value x (recorded in the student, in the graph of the student's loss)
      -> teacher module m_1 -> m_2 -> ... -> m_k        (the teacher's own, frozen, eval mode)
      -> cross value: gradients reach x (and so the student), never the teacher

``TeacherPath(['bbox_head.cls_convs.3', 'bbox_head.gfl_cls'])`` names the teacher modules in
the order they are applied; a method creates it in ``__init__``, binds it to the teacher it
reads in :meth:`~mmkd.methods.base.BaseDistillMethod.bind_teachers` (``path.bind(teachers)``)
and calls it on a tensor in ``forward``::

    path(x)             # m_k(...m_2(m_1(x)))
    path(x, level=i)    # a module that is an nn.ModuleList with one module per FPN level
                        # (a head's ``scales``) is indexed by the level: m[i]

Rules:

* Names are resolved with :func:`mmkd.recorders.find_module`: a wrong name fails at bind,
  naming the module and the closest names in that teacher.
* The teacher stays frozen. The distiller already keeps every teacher with
  ``requires_grad=False`` and in eval mode; :meth:`TeacherPath.bind` checks it for the path's
  modules (a module with a trainable parameter or in training mode is an error: its
  parameters would be updated, or its BatchNorm statistics, through the student's loss).
  Gradients flow through the modules to the input, as through any frozen layer.
* The path keeps *references* to the teacher's modules in a tuple, not as sub-modules: the
  teacher's parameters are not registered in the method (not in the optimizer, not in the
  checkpoint, not moved or cast twice), as :class:`~mmkd.methods.base.BaseDistillMethod` asks.
  A checkpoint loaded into the teacher later is seen (the modules are the teacher's own).
* The modules are called as they are (``module(x)``): an mmcv ``ConvModule`` applies its
  conv, norm and activation; to stop before the activation, name its ``conv`` and its norm
  (``'...cls_convs.2.conv'``, ``'...cls_convs.2.gn'``).
"""
from typing import List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from ..recorders import find_module


class TeacherPath:
    """Teacher modules applied in order to a student value (the module docstring).

    Args:
        modules (list[str]): module names in the teacher, applied in this order. A name whose
            module is an ``nn.ModuleList`` (e.g. ``'bbox_head.scales'``) is indexed by the
            ``level`` given to the call.
        teacher (str, optional): which of the teachers given to :meth:`bind` (a
            ``{name: model}`` dict) the modules belong to. Default None: the only one (an
            error if there are several).
    """

    def __init__(self, modules: Sequence[str], teacher: Optional[str] = None):
        if isinstance(modules, str) or not modules or not all(
                isinstance(m, str) and m for m in modules):
            raise TypeError('TeacherPath(modules) takes a non-empty list of module names in '
                            f"the teacher, e.g. ['bbox_head.cls_convs.3', 'bbox_head.gfl_cls'],"
                            f' got {modules!r}.')
        self.names: Tuple[str, ...] = tuple(modules)
        self.teacher = teacher
        self._modules: Tuple[nn.Module, ...] = ()  # references, never sub-modules

    # -- binding ------------------------------------------------------------------------
    def bind(self, teachers: Union[nn.Module, Mapping[str, nn.Module]],
             desc: str = 'teacher') -> 'TeacherPath':
        """Resolve the names in a teacher model, or in the one of ``{name: model}`` that
        ``teacher`` names (the dict a method's ``bind_teachers`` receives). Returns self."""
        if isinstance(teachers, Mapping):
            if self.teacher is not None:
                if self.teacher not in teachers:
                    raise KeyError(f'TeacherPath: no teacher named {self.teacher!r}; this '
                                   f'block reads {list(teachers)}.')
                name = self.teacher
            elif len(teachers) == 1:
                name = next(iter(teachers))
            else:
                raise ValueError(f'TeacherPath{list(self.names)}: the block reads several '
                                 f'teachers {list(teachers)}; say which one holds the modules '
                                 '(TeacherPath(modules, teacher=NAME)).')
            model, desc = teachers[name], f'teacher {name!r}'
        else:
            model = teachers
        modules = tuple(find_module(model, n, f'{desc} (TeacherPath)') for n in self.names)
        for n, m in zip(self.names, modules):
            trainable = [p for p, v in m.named_parameters() if v.requires_grad]
            if trainable:
                raise ValueError(
                    f'TeacherPath: the {desc} module {n!r} has trainable parameters '
                    f'({trainable[:3]}); a teacher path runs frozen teacher modules (the '
                    'distiller freezes its teachers: requires_grad_(False), eval()).')
            training = [k or n for k, v in m.named_modules() if v.training]
            if training:
                raise ValueError(f'TeacherPath: the {desc} module {n!r} is in training mode '
                                 f'({training[:3]}); a teacher path runs it in eval mode.')
        self._modules = modules
        return self

    @property
    def modules(self) -> Tuple[nn.Module, ...]:
        if not self._modules:
            raise RuntimeError(f'TeacherPath{list(self.names)} is not bound to a teacher: the '
                               "method must call path.bind(teachers) in bind_teachers().")
        return self._modules

    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        state = 'bound' if self._modules else 'unbound'
        return f'TeacherPath({list(self.names)}, {state})'

    # -- running ------------------------------------------------------------------------
    def __call__(self, x: torch.Tensor, level: Optional[int] = None) -> torch.Tensor:
        """Apply the modules in order; an ``nn.ModuleList`` takes its ``level``-th module."""
        for name, module in zip(self.names, self.modules):
            if isinstance(module, nn.ModuleList):
                if level is None or not -len(module) <= level < len(module):
                    raise IndexError(
                        f'TeacherPath: {name!r} is a list of {len(module)} modules, one per '
                        f'level; call the path with level=0..{len(module) - 1} (got '
                        f'level={level}).')
                module = module[level]
            x = module(x)
        return x

    def parameters(self) -> List[torch.nn.Parameter]:
        """The teacher parameters the path reads (for tests and diagnostics)."""
        return [p for m in self.modules for p in m.parameters()]
