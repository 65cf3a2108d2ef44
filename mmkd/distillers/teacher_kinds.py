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
cached      a store written by tools/cache_teacher.py   none                 no            no
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

**A cached teacher** (issue 34): ``teachers=dict(t=dict(config=..., checkpoint=...,
cache='work_dirs/cache/t'))`` reads the values that ``tools/cache_teacher.py`` stored for every
training batch instead of running the teacher; no model is built (its config and checkpoint
identify it: they are fingerprinted). See :mod:`mmkd.distillers.teacher_cache` for the store,
the fingerprint and what may be cached.
"""
from typing import Optional

import torch
from mmengine.dist import get_dist_info

from .teacher_cache import (CacheReader, TeacherCacheError, check_fingerprint,
                           method_refusal, view_digest)
from .teachers import Teacher, TeacherKind, TeacherView

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


class SelfTeacher(TeacherKind):
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

    def attach(self, student_recorder) -> None:
        self.recorder = student_recorder

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


class CachedTeacher(TeacherKind):
    """A teacher whose values come from a cache (:mod:`mmkd.distillers.teacher_cache`).

    Each step it finds the batch by the digest of what the teacher would be fed (the
    student's preprocessed batch and any raw data-sample fields it reads) and hands the
    stored values to the blocks, float32 and on the batch's device. Its points must be in
    the cache (no wildcards: there is no model to expand them against); a block whose method
    reads the teacher's own modules (``bind_teachers``) cannot use it, and a top-K point is
    only for a method that reads logits (``reads_teacher_logits``). A cached teacher cannot
    predict (``eval_teacher``, ``val_teachers``): it has no model.

    Args:
        name (str): the teacher's name (as in the cache).
        spec (dict): its ``teachers.<name>`` entry (``cache`` is the folder).
        where (str): that setting, for messages (``'model.teachers.kd'``).
        desc (str): how messages name it.
        fingerprint (dict): :func:`~.teacher_cache.teacher_fingerprint` of this config.
    """
    kind = 'cached'
    trainable = False
    runs = False
    stop_early = None

    def __init__(self, name: str, spec: dict, where: str, desc: str, fingerprint: dict,
                 source: str, scope: Optional[str], config=None):
        if spec.get('trainable'):
            raise ValueError(f'model.{where}: a cached teacher (cache=...) does not learn; '
                             'remove trainable=True or the cache.')
        self.name, self.where, self.desc = name, f'model.{where}', f'{desc} (cached)'
        self.checkpoint, self.source, self.scope, self.config = (
            spec.get('checkpoint'), source, scope, config)
        self.folder = spec['cache']
        rank, world_size = get_dist_info()
        self.store = CacheReader(self.folder, name, rank, world_size, self.where)
        check_fingerprint(self.store.fingerprint, fingerprint, self.where, self.folder,
                          'teacher or student preprocessing')
        # The generator as the live teacher's build left it (the methods built next draw
        # from it: their initial weights are then those of the live run).
        torch.set_rng_state(self.store.rng_after_build)
        # Only what the view reads (the data-sample fields) is used: the digest is of the
        # student's batch and those fields, not of the teacher's normalisation (fingerprinted).
        self.view = TeacherView(None, None, spec.get('inputs', 'inputs'), self.desc,
                                self.where)
        self.recorder = self  # the distiller reads recorded values through .get()
        self.values = {}

    def run_fingerprint(self) -> dict:
        """What the cache was built with on the runner's side (checked when training
        starts, by :class:`mmkd.TeacherCacheHook`)."""
        return self.store.meta['run_fingerprint']


    def expand(self, spec, where: str):
        specs = spec if isinstance(spec, (list, tuple)) else [spec]
        for s in specs:
            if (isinstance(s, str) and '*' in s) or (isinstance(s, dict) and (
                    'matches' in s or '*' in str(s.get('module', '')))):
                raise ValueError(f'{where}: the point {s!r} is a pattern; a cached teacher '
                                 'has no model to match it against: name the points '
                                 f'({self.store.points}).')
        return spec

    def check_point(self, point, where: str) -> None:
        if str(point) not in self.store.points:
            raise KeyError(f'{where}: the point {str(point)!r} is not in the cache '
                           f'{self.folder!r}, which holds {self.store.points} (rebuild it with '
                           'the blocks of this config).')

    def bind(self, block: str, method, points):
        topk = [str(p) for p in points if any(
            c['encoding'] == 'topk' for c in self.store.layouts[str(p)]['components'])]
        refusal = method_refusal(block, method, topk)
        if refusal:
            raise ValueError(f'{refusal}; the {self.desc} has only stored values: run this '
                             f'teacher live (remove {self.where}.cache) or build the cache '
                             'without --topk.')
        return None

    def prepare_dry_run(self, batch_size: int) -> None:
        self.values = self.store.example(batch_size)

    def record(self, inputs, data_samples, record_fn, grad: bool = False) -> dict:
        """Look this batch up (no forward); the values land in ``self.values``."""
        device = inputs.device if torch.is_tensor(inputs) else 'cpu'
        self.values = self.store.read(view_digest(self.view, inputs, data_samples), device)
        return {}

    def get(self, point, learner: bool = False):
        try:
            return self.values[str(point)]
        except KeyError:
            raise TeacherCacheError(f'{self.desc}: no value for {str(point)!r} in this step '
                                    '(record() was not called).') from None
