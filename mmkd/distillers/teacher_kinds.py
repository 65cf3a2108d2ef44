"""Kinds of teacher beside the frozen one (:class:`mmkd.distillers.teachers.Teacher`).

Every kind answers the distiller's two questions, so ``distiller.py`` keeps one data flow:
``record(inputs, data_samples, record_fn)`` (run on this batch, return the teacher's own losses)
and ``get(point, learner)`` (the value of a record point in this step).

==========  ==========================================  ===================  ============  ========
kind        values come from                            gradients            checkpointed  exported
==========  ==========================================  ===================  ============  ========
frozen      a forward without grad, eval mode           none                 no            no
self        the student's own forward (detached)        through the student  (student)     (student)
trainable   a forward with grad, in ``loss`` mode       its own loss terms   yes           alone
==========  ==========================================  ===================  ============  ========

**The student itself** (self-distillation: BYOT, MMRazor's ``SelfDistiller``): a block's
teacher point ``'self:backbone.layer4'`` reads the student's own recorded value, detached by
default (the deeper part teaches, it is not pulled towards the shallower one; BYOT's authors
detach every teacher term). A distiller whose blocks read only ``self:`` points needs no
``teacher``/``teachers`` at all. To keep the gradient, declare the kind:
``teachers=dict(self=dict(detach=False), ...)``.

**A trainable teacher** (online / mutual learning: DML, KDCL): ``teachers=dict(peer=dict(
config=..., checkpoint=None, trainable=True))``. It is a submodule of the distiller
(``trainable_teachers.peer.*`` in its state dict), so it is optimised (by the one optimiser, or
its own with :class:`mmkd.DistillerOptimWrapperConstructor`), saved in every checkpoint,
resumed, and synchronised by DDP. Each step it runs in ``loss`` mode on its view of the batch,
so its own task losses join the total as ``<name>.loss_*``. As a teacher (a block's
``teacher='peer:head'``) its values are detached: it teaches without being pulled. To make it
learn from the others, a block names it as the *learner*: ``student='peer:head.fc'`` (its value
with gradient) and ``teacher='self:head.fc'`` (the student's, detached). DML is the two blocks
``student='head.fc', teacher='peer:head.fc'`` and ``student='peer:head.fc',
teacher='self:head.fc'``, each with ``LogitKD``. ``checkpoint=None`` starts it from its own
initialisation (``init_weights``), as online learning does; a path starts it from weights.
``tools/test.py --teacher peer`` tests it alone, ``extract_student.py --model peer`` exports it.
"""
from typing import Optional

import torch

from .teachers import Teacher

#: The name of the student itself in teacher points (``'self:head.fc'``).
SELF = 'self'
SELF_KEYS = ('detach',)


def detached(value):
    """``value`` (a tensor or nested tuples/lists of tensors) without gradient history."""
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, (tuple, list)):
        return type(value)(detached(v) for v in value)
    return value


class SelfTeacher:
    """The student as its own teacher: values from the student's forward (its recorder).

    Args:
        student (nn.Module): the student.
        detach (bool): give the values without gradient. Default True (BYOT).
    """
    kind = SELF
    trainable = False
    runs = False  # the student's own forward records its values
    stop_early = None
    checkpoint = None
    view = None
    scope = None
    config = None

    def __init__(self, student, detach: bool = True):
        if not isinstance(detach, bool):
            raise TypeError(f'teachers.self.detach must be True or False, got {detach!r}.')
        self.name, self.model, self.detach = SELF, student, detach
        self.recorder = None  # the student's recorder, set by the distiller
        self.source = 'the student itself'
        self.desc = 'the student itself (teacher points "self:...")'

    def record(self, inputs, data_samples, record_fn, grad: bool = False) -> dict:
        return {}

    def get(self, point, learner: bool = False):
        value = self.recorder.get(point)
        return detached(value) if self.detach else value


class TrainableTeacher(Teacher):
    """A teacher that learns: a submodule run with gradients in ``loss`` mode each step.

    Its value is detached where it teaches (a block's ``teacher``) and kept where it learns (a
    block's ``student``: ``'peer:head.fc'``).
    """
    kind = 'trainable'
    trainable = True

    def record(self, inputs, data_samples, record_fn, grad: bool = True) -> dict:
        """Its task losses on its view of the batch, with its record points filled (always
        with gradients: it learns)."""
        self.recorder.start()
        try:
            losses = self.model(self.view(inputs, data_samples), data_samples, mode='loss')
        except Exception:
            self.recorder.enabled = False
            raise
        self.recorder.finish()
        return losses

    def get(self, point, learner: bool = False):
        value = self.recorder.get(point)
        return value if learner else detached(value)


def self_teacher_config(spec: Optional[dict]) -> dict:
    """The ``teachers.self`` entry, checked: only ``detach``."""
    spec = {} if spec is None else spec
    if not isinstance(spec, dict) or set(spec) - set(SELF_KEYS):
        raise KeyError(f'teachers.self is the student itself; its only key is {list(SELF_KEYS)}'
                       f' (e.g. dict(detach=False)), got {spec!r}.')
    return dict(spec)
