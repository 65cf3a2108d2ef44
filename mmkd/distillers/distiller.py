"""The distiller: an MMEngine model that wraps a student, one or more frozen teachers and a set
of distillation blocks.

One training step::

    batch -> student's data_preprocessor -> for each teacher: its view of the batch
    (re-normalised for it, or a privileged input from the data samples) -> teacher (no grad,
    eval mode, hooks record, stops after its deepest recorded module) -> student (hooks
    record, task losses) -> each block's method(student_value, teacher_value(s)) x its loss
    weight (a number or a schedule) -> {'student.loss_*', 'distill.<block>.loss_*'}
    -> non-finite check (raise, or skip the optimiser step) -> optimiser

``predict`` and ``tensor`` modes run the student alone, so the base config's evaluator and
``tools/test.py`` see an ordinary model.

Teachers are deliberately *not* submodules: ``parameters()``, ``state_dict()``,
``init_weights()``, the optimiser constructor and DDP never see them, so they are never
trained, synchronised, re-initialised or checkpointed, and no paramwise optimiser config logs
a line per frozen teacher parameter. Device and dtype moves (``.to()``, ``.cuda()``,
``.half()``) still reach them through :meth:`Distiller._apply`.

Several teachers (``teachers=dict(det=..., seg=...)``) are named in the blocks' teacher points
as ``'det:neck'``; one ``teacher=dict(...)`` is the shorthand (its points need no name). See
docs/multi_teacher.md.
"""
import contextlib
import copy
import logging
import math
import numbers
import re
from typing import Dict, List, Optional, Sequence, Union

import torch
import torch.distributed as torch_dist
import torch.nn as nn
from mmengine.config import Config
from mmengine.logging import MessageHub, print_log
from mmengine.model import BaseModel, revert_sync_batchnorm
from mmengine.optim import AmpOptimWrapper, OptimWrapperDict
from mmengine.registry import DefaultScope

from ..recorders import (ModuleRecorder, RecordPoint, RecordPointError, StopForward,
                         expand_points, find_module, parse_point)
from ..registry import MODELS
from ..utils.arguments import check_arguments
from ..utils.errors import with_message
from .inserts import attach_inserts, infer_insert_channels
from .loss_weights import NEGATIVE_OPT_IN, LossWeight, build_loss_weight
from .model_builder import (build_model_in_scope, infer_model_scope, load_checkpoint_strict,
                            load_model_config, without_pretrained)
from .teacher_cache import teacher_fingerprint
from .teacher_kinds import (SELF, CachedTeacher, SelfTeacher, TrainableTeacher,
                            self_teacher_config)
from .teachers import (TEACHER_KEYS, Normalisation, Teacher, TeacherView, check_forward_options,
                       check_revise_keys, group_teacher_points, parse_normalisation,
                       split_learner_points)

BLOCK_KEYS = ('student', 'teacher', 'method', 'loss_weight', NEGATIVE_OPT_IN)
NONFINITE_POLICIES = ('raise', 'skip')
DEFAULT_NONFINITE_SKIP_LIMIT = dict(consecutive=5, total=100)  # see Distiller's docstring
DEFAULT_DRY_RUN_INPUT_SHAPE = (2, 3, 224, 224)
#: The most elements a dry-run batch may have (see the Distiller's ``dry_run_input_shape``).
MAX_DRY_RUN_INPUT_ELEMENTS = 2 ** 25
#: The name of the teacher given with the one-teacher shorthand ``teacher=dict(...)``.
SOLE_TEACHER = 'teacher'
_TEACHER_NAME = re.compile(r'^[A-Za-z_][A-Za-z0-9_]*$')


class NonFiniteError(FloatingPointError):
    """A recorded value (dry run) or a loss (training) is NaN or infinite."""


class DistillBlock:
    """One distillation block: where to read in the student and in the teachers, the method,
    its loss weight.

    ``student`` is a record point (``'neck'``, ``'neck[0]'``, ``'head.fc@input'``, a dict) or a
    list of them; ``teacher`` is a list of ``(teacher name, RecordPoint)``. With a list
    (``*_multi``), the method receives a list of values, in the order given. ``learner`` is the
    model whose points ``student`` names: None for the student, or a trainable teacher's name
    (``student='peer:head.fc'``: the block teaches that teacher).
    """

    def __init__(self, name: str, student, teacher: List[tuple], teacher_multi: bool,
                 method: nn.Module, loss_weight: LossWeight, learner: Optional[str] = None):
        self.name = name
        self.learner = learner
        self.student_multi = isinstance(student, (list, tuple))
        self.student_points = [parse_point(p) for p in
                               (student if self.student_multi else [student])]
        self.teacher_multi = teacher_multi
        self.teacher_points = [(t, parse_point(p)) for t, p in teacher]
        self.method = method
        self.loss_weight = loss_weight
        # What the method was built for in the dry run: {'student': [...], 'teacher': [...]}
        # of (ndim, channels, which trailing dims are 1) per level, and the shapes themselves.
        self.built_signature: Optional[dict] = None
        self.built_shapes: Optional[dict] = None

    @property
    def method_type(self) -> str:
        return type(self.method).__name__

    @property
    def teacher_names(self) -> List[str]:
        return list(dict.fromkeys(t for t, _ in self.teacher_points))

    def student_value(self, recorder: ModuleRecorder):
        """The learner's values (``recorder``: the student's, or the learning teacher's)."""
        values = [recorder.get(p) for p in self.student_points]
        return values if self.student_multi else values[0]

    def teacher_value(self, teachers: Dict[str, Teacher]):
        values = [teachers[t].get(p) for t, p in self.teacher_points]
        return values if self.teacher_multi else values[0]

# ---------------------------------------------------------------------- helpers
def _tensors(value) -> List[torch.Tensor]:
    """The tensors of a recorded value (a tensor or nested tuples/lists of them)."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _tensors(v)]
    return []


def _signature(value) -> list:
    """Per level: (ndim, channels, which dims after the channel dim are 1).

    Channels are the last dim of (N, L, C) tokens and dim 1 otherwise, as the methods read
    them; a size-1 spatial dim is part of the signature because methods treat (N, C, 1, 1)
    maps as vectors (DiffKD's MLP denoiser).
    """
    sig = []
    for t in _tensors(value):
        channel_dim = 2 if t.dim() == 3 else 1
        channels = t.shape[channel_dim] if t.dim() > 1 else None
        rest = tuple(d == 1 for i, d in enumerate(t.shape) if i > 0 and i != channel_dim)
        sig.append((t.dim(), channels, rest))
    return sig


def _shapes(value) -> list:
    return [tuple(t.shape) for t in _tensors(value)]


@contextlib.contextmanager
def _in_block(name: str, what: str):
    """Prefix any error raised inside with the block it belongs to."""
    try:
        yield
    except (ValueError, TypeError, KeyError, IndexError, RuntimeError, NotImplementedError,
            AssertionError) as e:
        text = e.args[0] if len(e.args) == 1 and isinstance(e.args[0], str) else str(e)
        if text.startswith(f'Block {name!r}'):
            raise
        raise with_message(e, f'Block {name!r} ({what}): {text}') from e


def _valid_methods() -> List[str]:
    from ..methods import BaseDistillMethod
    return sorted(k for k, v in MODELS.module_dict.items()
                  if isinstance(v, type) and issubclass(v, BaseDistillMethod)
                  and k not in ('BaseDistillMethod', 'LevelwiseMethod'))


def _build_method(cfg, block_name: str) -> nn.Module:
    """Build a block's method from ``dict(type=..., **args)`` or its type name alone."""
    from ..methods import BaseDistillMethod
    if isinstance(cfg, str):  # method='LogitKD' is shorthand for dict(type='LogitKD')
        cfg = dict(type=cfg)
    if not isinstance(cfg, dict) or 'type' not in cfg:
        raise TypeError(f'Block {block_name!r}: `method` must be a method name or '
                        f"dict(type=..., ...), got {cfg!r}. Valid methods: {_valid_methods()}.")
    cfg = copy.deepcopy(dict(cfg))
    # Methods live in mmkd's registry whatever the runner's default scope is.
    with DefaultScope.overwrite_default_scope('mmkd'):
        cls = cfg['type'] if isinstance(cfg['type'], type) else MODELS.get(cfg['type'])
        if cls is None:
            raise KeyError(f'Block {block_name!r}: unknown method type {cfg["type"]!r}. '
                           f'Valid methods: {_valid_methods()}.')
        if not (isinstance(cls, type) and issubclass(cls, BaseDistillMethod)):
            raise TypeError(f'Block {block_name!r}: {cls.__name__} is not a distillation '
                            f'method (mmkd.methods.BaseDistillMethod). Valid methods: '
                            f'{_valid_methods()}.')
        # Unknown arguments, wrong types and impossible values fail here, naming the block,
        # the method and the argument (the method's annotations are its schema).
        check_arguments(cls, {k: v for k, v in cfg.items() if k != 'type'},
                        f'Block {block_name!r}: {cls.__name__}')
        with _in_block(block_name, cls.__name__):
            return MODELS.build(cfg)


def _current_iteration() -> Optional[int]:
    hub = MessageHub.get_current_instance()
    it = hub.get_info('iter') if hub is not None else None
    return None if it is None else int(it) + 1  # the log's 1-based count


# ---------------------------------------------------------------------- the model
@MODELS.register_module()
class Distiller(BaseModel):
    """Distil one or several teachers into a student with any number of blocks.

    Args:
        student (dict | str): the student's model config (e.g. ``{{_base_.model}}``) or the path
            of a config whose ``model`` is the student (``'mmdet::...'`` or a local file).
        teacher (dict, optional): one teacher (the shorthand; its points need no name):
            ``config`` (a path as above; its ``default_scope`` says which package builds it) or
            ``model`` (a model dict), plus ``checkpoint`` (path or URL, loaded strictly and
            safely) and optionally ``scope``, ``revise_keys`` (``[(regex, replacement)]``
            applied to the checkpoint's keys, for weights from another codebase, e.g. timm),
            ``normalisation``, ``inputs`` and ``stop_early`` (see
            :mod:`mmkd.distillers.teachers`), and the forward options of a frozen teacher:
            ``precision`` (``'fp32'``, default; ``'bf16'`` or ``'fp16'``: autocast on this
            teacher's forward only, its recorded values handed to the methods as float32),
            ``channels_last`` (its weights and image input in that memory layout) and
            ``compile`` (True or ``torch.compile`` arguments; eager again, with a warning, if
            compiling fails). ``cache='DIR'`` reads the teacher's values from a cache written
            by ``tools/cache_teacher.py`` instead of running it
            (:mod:`mmkd.distillers.teacher_cache`).
        teachers (dict, optional): several named teachers, ``name -> dict`` as ``teacher``.
            Give ``teacher`` or ``teachers``. Blocks name the teacher of each point:
            ``teacher='det:neck'`` or ``dict(teacher='det', module='neck')``.
        blocks (dict): ``name -> dict(student=point(s), teacher=point(s), method=cfg,
            loss_weight=1.0)``; ``method`` is ``dict(type=..., **args)`` or a type name
            (``'LogitKD'``), its arguments checked at build against the method's declared
            types and ranges (:mod:`mmkd.utils.arguments`); ``loss_weight`` a number or a
            schedule (:mod:`mmkd.distillers.loss_weights`), >= 0 unless the block also sets
            ``allow_negative_loss_weight=True`` (a negative weight, schedule value, start,
            min_value or gamma pushes the student away from the teacher: refused as a typo
            otherwise). See :mod:`mmkd.recorders` for point syntax.
        student_scope (str, optional): registry scope of the student; inferred when None.
        dry_run_input_shape (tuple, optional): shape of the random batch run through every
            model at construction to size every method's modules. None: (2, 3, 224, 224);
            ``tools/train.py`` and ``tools/test.py`` fill it from the config's pipeline when the
            config does not set it (see :func:`mmkd.utils.infer_dry_run_input_shape`). Four
            integers (N, C, H, W), each >= 1, at most ``MAX_DRY_RUN_INPUT_ELEMENTS`` = 2**25
            (33.5 M) elements in all, checked before anything is allocated: the batch is a
            float tensor run through every model, so a typo (an extra zero) would otherwise
            exhaust memory before any message; a batch of 2 at the training crop size is all
            the dry run needs ((2, 3, 2048, 2048) fits).
        stop_teacher_early (bool): end each teacher's forward after its deepest recorded
            module (a teacher's own ``stop_early`` overrides it). Default True.
        eval_teacher (bool | str): ``predict``/``tensor`` run a teacher instead of the student
            (``tools/test.py --teacher [NAME]``): True for the only teacher, or a teacher's
            name. Default False.
        val_teachers (bool | list[str]): in ``predict`` mode (the student evaluated), also
            run these teachers (True: every teacher with a forward of its own, i.e. not
            ``'self'``) in ``predict`` mode on their views of the batch and put their
            predictions on each of the student's output samples as ``teacher_predictions``
            (``{name: the teacher's output sample for that image}``): what
            :class:`mmkd.evaluation.TeacherStudentAgreement` compares. The teachers predict on
            copies of the input samples (OpenMMLab models write predictions into the samples
            they are given). Costs one forward per teacher per evaluated batch; not done
            while ``eval_teacher`` tests a teacher. ``tools/train.py``/``tools/test.py`` set
            it to True when the evaluator holds that metric and the config leaves it unset.
            Default False.
        nonfinite_loss (str): what a NaN/inf loss does in training. ``'raise'`` (default): stop
            with :class:`NonFiniteError` naming the term, the iteration and whether the inputs
            and the recorded teacher/student values were finite. ``'skip'``: no optimiser step
            for that batch (in DDP every rank skips it together); the count is logged as
            ``nonfinite_skips``, and the run stops as ``'raise'`` does once
            ``nonfinite_skip_limit`` is reached.
        nonfinite_skip_limit (dict, optional): with ``nonfinite_loss='skip'``, how many steps
            may be skipped ``consecutive``-ly (reset by every finite step) and in ``total``;
            the next non-finite step stops the run with :class:`NonFiniteError` (the report
            above, the counts and this setting). Each an integer >= 1, or None for no limit;
            a missing key keeps its default, ``dict(consecutive=5, total=100)``. Why: a skipped
            step leaves the weights as they were, so a student whose weights give non-finite
            losses (it diverged) gives them on every batch and never recovers; a few bad
            batches (a corrupt image, an overflow) are isolated in shuffled data, and five in a
            row from the data alone are unlikely, so 5 stops a diverged run within a few
            iterations. ``total`` bounds the batches a run may lose to sporadic bad data
            without anyone fixing it (100: rare events in a long run pass, a run losing a batch
            every few iterations stops). The counts restart at 0 on ``--resume`` (they are not
            in the checkpoint).
        init_student_from (dict, optional): ``dict(teacher=NAME, prefixes=['neck', ...])``:
            after the student's own initialisation, copy the teacher's weights under those
            prefixes into the student (strict: every copied key must exist in the student with
            the same shape), as MGD/FGD do for detection necks and heads. Logged by name.
        student_inserts (dict, optional): modules inserted into the student after some of its
            modules, ``name -> dict(after=<student module>, module=dict(type=...))``: part of
            the student for training, test and export (weights ``student.kd_inserts.<name>.*``;
            see :mod:`mmkd.distillers.inserts`). letKD's KD layer is one.
        init_cfg (dict, optional): as for any BaseModule.

    Training checkpoints hold only the student and the methods (teachers are reloaded from
    their own checkpoints).
    """

    def __init__(self,
                 student: Union[dict, str],
                 teacher: Optional[dict] = None,
                 blocks: Optional[Dict[str, dict]] = None,
                 teachers: Optional[Dict[str, dict]] = None,
                 student_scope: Optional[str] = None,
                 dry_run_input_shape: Optional[Sequence[int]] = None,
                 stop_teacher_early: bool = True,
                 eval_teacher: Union[bool, str] = False,
                 val_teachers: Union[bool, Sequence[str]] = False,
                 nonfinite_loss: str = 'raise',
                 nonfinite_skip_limit: Optional[dict] = None,
                 init_student_from: Optional[dict] = None,
                 student_inserts: Optional[Dict[str, dict]] = None,
                 data_preprocessor=None,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if nonfinite_loss not in NONFINITE_POLICIES:
            raise ValueError(f'nonfinite_loss={nonfinite_loss!r}: valid values are '
                             f'{list(NONFINITE_POLICIES)}.')
        self.nonfinite_loss = nonfinite_loss
        self.nonfinite_skip_limit = self._check_skip_limit(nonfinite_skip_limit)
        self.nonfinite_skips = 0  # skipped steps: in all, and in a row (reset by a good one)
        self.nonfinite_consecutive = 0
        self._skip_step = False
        teacher_cfgs = self._teacher_configs(teacher, teachers)
        self.student = self._build_student(student, student_scope, data_preprocessor)
        self.dry_run_input_shape = self._check_dry_run_input_shape(dry_run_input_shape)
        # As configured, with what the inserts' modules infer from the student filled in
        # (KDLayer's in_channels): what checkpoints record and export writes.
        self.student_inserts = infer_insert_channels(
            self.student, student_inserts, self.dry_run_input_shape, 'student')
        attach_inserts(self.student, self.student_inserts, 'student', 'model.student_inserts')
        # Building the teachers and the methods and the dry run draw random numbers; the torch
        # generator is put back to this point at the end, so the student's init_weights() (run
        # by the Runner after the build) draws what it draws in a plain student run with the
        # same seed: baseline and distilled students start from the same weights.
        rng_after_student = torch.get_rng_state()
        # The batch is prepared by the student's preprocessor; each teacher gets its own view.
        self.data_preprocessor = self.student.data_preprocessor
        distributed = torch_dist.is_available() and torch_dist.is_initialized()
        if not distributed:
            # SyncBN (common in mmseg configs) cannot run in a single CPU process; with one
            # process it is plain BN anyway.
            self.student = revert_sync_batchnorm(self.student)
        # Teachers by name, of any kind (mmkd.distillers.teacher_kinds); the trainable ones
        # are also submodules here: optimised, checkpointed and synchronised.
        self._teachers: Dict[str, Teacher] = {}
        self.trainable_teachers = nn.ModuleDict()
        for name, cfg in teacher_cfgs.items():
            if name == SELF:
                self._teachers[SELF] = SelfTeacher(self.student, **self_teacher_config(cfg))
                continue
            t = self._build_teacher(name, cfg, shorthand=teacher is not None)
            if t.model is None:  # values from a cache
                self._teachers[name] = t
                continue
            if not distributed:
                t.model = revert_sync_batchnorm(t.model)
            if t.trainable:
                self.trainable_teachers[name] = t.model
            else:
                # Frozen for good: no grad, eval mode (BN statistics and dropout fixed), and
                # kept out of the module tree (see the module docstring).
                t.model.requires_grad_(False)
                t.model.eval()
            t.log_view()
            self._teachers[name] = t
        self.stop_teacher_early = stop_teacher_early
        self.eval_teacher = eval_teacher
        self._eval_teacher_name()  # fails now on a wrong name
        self.val_teachers = self._check_val_teachers(val_teachers)

        self._build_blocks(blocks)
        blocks_ = list(self.blocks.values())
        # The student's recorder also holds the points its own self-teacher reads; a
        # trainable teacher's, the points of the blocks it learns in.
        self.student_recorder = ModuleRecorder(
            self.student, [p for b in blocks_ if b.learner is None for p in b.student_points]
            + [p for b in blocks_ for n, p in b.teacher_points if n == SELF], 'student')
        for name, t in self._teachers.items():
            if not t.runs:
                t.attach(self.student_recorder)
                continue
            t.recorder = ModuleRecorder(
                t.model, [p for b in blocks_ for n, p in b.teacher_points if n == name]
                + [p for b in blocks_ if b.learner == name for p in b.student_points],
                self._teacher_desc(name))
        self._dry_run(self.dry_run_input_shape)
        self._shapes_checked = False
        self.init_student_from = self._check_init_student_from(init_student_from)
        torch.set_rng_state(rng_after_student)

    # ------------------------------------------------------------------ teachers
    @property
    def teachers(self) -> Dict[str, nn.Module]:
        """The teacher models by name: the frozen ones (not submodules: see the module
        docstring) and the trainable ones (submodules); not the student itself (``self``)."""
        return {name: t.model for name, t in self._teachers.items() if t.runs}

    @property
    def teacher(self) -> nn.Module:
        """The only teacher; with several, name one: ``distiller.teachers['det']``."""
        return self._teachers[self._sole_teacher('teacher')].model

    @property
    def teacher_recorder(self) -> ModuleRecorder:
        return self._teachers[self._sole_teacher('teacher_recorder')].recorder

    @property
    def teacher_scope(self) -> str:
        return self._teachers[self._sole_teacher('teacher_scope')].scope

    @property
    def teacher_checkpoint(self) -> str:
        return self._teachers[self._sole_teacher('teacher_checkpoint')].checkpoint

    def teacher_info(self, name: str) -> Teacher:
        """Model, scope, checkpoint, recorder and input view of the teacher ``name``."""
        if name not in self._teachers:
            raise KeyError(f'Unknown teacher {name!r}; the teachers are '
                           f'{list(self._teachers)}.')
        return self._teachers[name]

    def _sole_teacher(self, what: str) -> str:
        names = list(self.teachers)
        if len(names) != 1:
            # Not AttributeError: nn.Module.__getattr__ would replace the message.
            raise RuntimeError(f'`{what}` is for a distiller with one teacher; this one has '
                               f'{list(self._teachers)}: use teachers[NAME] or '
                               'teacher_info(NAME).')
        return names[0]

    def _teacher_desc(self, name: str) -> str:
        if name == SELF:
            return 'student (as its own teacher, "self")'
        others = [n for n in self._teachers if n != SELF]
        return 'teacher' if others == [SOLE_TEACHER] else f'teacher {name!r}'

    def _eval_teacher_name(self) -> Optional[str]:
        value = self.eval_teacher
        if value is False or value is None:
            return None
        if value == SELF:
            raise ValueError("eval_teacher='self' is the student itself: leave eval_teacher "
                             'False to evaluate the student.')
        if value is True:
            names = list(self.teachers)
            if len(names) != 1:
                raise ValueError(f'eval_teacher=True is ambiguous with several teachers: give '
                                 f'a name, one of {names}.' if names else
                                 'eval_teacher=True: this distiller has no teacher to test.')
            return names[0]
        if value in self._teachers and value not in self.teachers:
            raise ValueError(f'eval_teacher={value!r}: that teacher is '
                             f'{self._teachers[value].kind} and has no model of its own to '
                             f'test; the teachers with one are {list(self.teachers)}.')
        if value not in self.teachers:
            raise KeyError(f'eval_teacher={value!r}: unknown teacher; the teachers are '
                           f'{list(self._teachers)}.')
        return value

    def _check_val_teachers(self, value) -> List[str]:
        runnable = [n for n, t in self._teachers.items() if t.runs]
        if value is False or value is None:
            return []
        if value is True:
            return runnable
        names = [value] if isinstance(value, str) else list(value)
        for name in names:
            if name not in runnable:
                raise KeyError(f'val_teachers: {name!r} is not a teacher with a forward of its '
                               f'own; valid names: {runnable} (or True for all of them).')
        return names

    def _teacher_predictions(self, inputs, data_samples) -> List[dict]:
        """Per sample, ``{name: that teacher's output sample}`` for ``self.val_teachers``;
        each teacher predicts on its view of the batch and on copies of the samples."""
        per_sample = [dict() for _ in range(len(inputs))]
        for name in self.val_teachers:
            t = self._teachers[name]
            copies = None if data_samples is None else [s.clone() for s in data_samples]
            outputs = t.model(t.view(inputs, copies), copies, mode='predict')
            for slot, out in zip(per_sample, outputs):
                slot[name] = out
        return per_sample

    def _apply(self, fn, recurse=True):
        # .to()/.cuda()/.half() reach the teachers although they are not submodules.
        super()._apply(fn, recurse)
        if recurse:
            for t in getattr(self, '_teachers', {}).values():
                if t.kind == 'frozen':  # the others are the student or submodules
                    t.model._apply(fn)
        return self

    def extra_repr(self) -> str:
        return '\n'.join(f'({self._teacher_desc(n)}): {type(t.model).__name__} from '
                         f'{t.checkpoint!r} (frozen, not a submodule)'
                         for n, t in self._teachers.items() if t.kind == 'frozen')

    def optim_groups(self) -> Dict[str, nn.Module]:
        """The parts :class:`mmkd.DistillerOptimWrapperConstructor` gives one optimiser each:
        ``'student'`` (every parameter no other part claims: the student, its inserts, the
        methods' modules), each trainable teacher by name, and :meth:`extra_optim_groups`
        (a subclass's own parts, e.g. a generator)."""
        groups = {n: t.model for n, t in self._teachers.items() if t.trainable}
        groups.update(self.extra_optim_groups())
        claimed = {id(m) for m in groups.values()}

        def is_claimed(module):
            return id(module) in claimed or (isinstance(module, nn.ModuleDict) and all(
                is_claimed(m) for m in module.values()))
        rest = nn.ModuleDict({n: m for n, m in self.named_children() if not is_claimed(m)})
        return {'student': rest, **groups}

    def extra_optim_groups(self) -> Dict[str, nn.Module]:
        """Parts of a subclass that get their own optimiser (name -> module). None here."""
        return {}

    # ------------------------------------------------------------------ construction
    @staticmethod
    def _teacher_configs(teacher, teachers) -> Dict[str, dict]:
        if teacher is not None and teachers is not None:
            raise KeyError('Give exactly one of `teacher` (one teacher: dict(config=..., '
                           'checkpoint=...)) or `teachers` (several: name -> dict(config=..., '
                           'checkpoint=...)), not both.')
        if teacher is None and teachers is None:
            return {}  # self-distillation: every teacher point is 'self:...' (checked later)
        if teacher is not None:
            if not isinstance(teacher, dict):
                raise TypeError('`teacher` must be a dict(config=<path>, checkpoint=<path or '
                                f'url>), got {teacher!r}.')
            return {SOLE_TEACHER: teacher}
        if not isinstance(teachers, dict) or not teachers:
            raise TypeError('`teachers` must be a non-empty dict: name -> dict(config=..., '
                            f'checkpoint=...), got {teachers!r}.')
        for name, cfg in teachers.items():
            if not isinstance(name, str) or not _TEACHER_NAME.match(name):
                raise ValueError(f'Teacher name {name!r}: use a Python identifier (letters, '
                                 'digits, _), since blocks write it as "<name>:<point>".')
            if not isinstance(cfg, dict):
                raise TypeError(f'Teacher {name!r} must be a dict(config=<path>, '
                                f'checkpoint=<path or url>), got {cfg!r}.')
        return dict(teachers)

    @staticmethod
    def _check_model_config(value, setting: str, valid=(str, dict)) -> None:
        """The student and the teachers are given as configs, not as built modules: the
        distiller builds each in its own package's scope (a teacher without downloading
        pretrained weights), and the student's config, saved with the run, is what
        tools/test.py and the export tool build it from again. A module has no config to save,
        so accepting one would make a run whose student no tool can rebuild."""
        if isinstance(value, nn.Module):
            raise TypeError(
                f'{setting} is a built {type(value).__name__} module, but a model config is '
                "expected: a model dict (dict(type=..., ...), e.g. the base config's "
                '{{_base_.model}}) or the path of a config whose `model` it is. The distiller '
                'builds the model itself, so that the config saved with the run can build it '
                'again (tools/test.py, tools/model_converters/extract_student.py).')
        if not isinstance(value, valid):
            raise TypeError(f'{setting} must be a model dict (dict(type=..., ...)) or a config '
                            f'path, got {type(value).__name__}: {value!r:.200}.')

    def _build_student(self, student, scope, data_preprocessor):
        self._check_model_config(student, 'model.student')
        if isinstance(student, str):
            cfg, file_scope = load_model_config(student)
            scope = scope or file_scope
        else:
            cfg = student
        cfg = copy.deepcopy(cfg)
        # The Runner hands the config's top-level `data_preprocessor` (mmpretrain keeps it
        # there) to the outermost model, i.e. the distiller: it belongs to the student.
        if data_preprocessor is not None and cfg.get('data_preprocessor') is None:
            cfg['data_preprocessor'] = copy.deepcopy(data_preprocessor)  # a build fills it
        self.student_scope = infer_model_scope(cfg, scope)
        # The student's model config as built (a config path resolved): what export rebuilds
        # it from (stored as data in checkpoints by mmkd.RunRecordHook).
        self.student_config = copy.deepcopy(cfg)
        return build_model_in_scope(cfg, self.student_scope)

    def _build_teacher(self, name: str, teacher: dict, shorthand: bool) -> Teacher:
        where = 'teacher' if shorthand else f'teachers.{name}'
        unknown = set(teacher) - set(TEACHER_KEYS)
        if unknown:
            raise KeyError(f'{where}: unknown keys {sorted(unknown)}; valid keys are '
                           f'{list(TEACHER_KEYS)}.')
        if ('config' in teacher) == ('model' in teacher):
            raise KeyError(f'{where}: give exactly one of `config` (a config path) or `model` '
                           '(a model dict).')
        trainable = teacher.get('trainable', False)
        if not isinstance(trainable, bool):
            raise TypeError(f'{where}.trainable must be True (a teacher that learns with the '
                            f'student) or False (frozen), got {trainable!r}.')
        if 'checkpoint' not in teacher and not trainable:
            raise KeyError(f'{where}: `checkpoint` (path or URL of the trained teacher) is '
                           'required (a trainable teacher may start from its own '
                           'initialisation: trainable=True, checkpoint=None).')
        if teacher.get('checkpoint') is None and not trainable:
            raise ValueError(f'{where}: checkpoint=None is only for a trainable teacher '
                             '(trainable=True); a frozen teacher needs its trained weights.')
        inputs = teacher.get('inputs', 'inputs')
        sources = [inputs] if isinstance(inputs, str) else inputs
        if (not isinstance(sources, (list, tuple)) or not sources
                or not all(isinstance(x, str) and x for x in sources)
                or len(set(sources)) != len(sources)):
            raise TypeError(f"{where}: inputs must be 'inputs' (the student's batch), the "
                            'name of a data-sample field, or a list of distinct ones '
                            f"(concatenated on channels, e.g. ['inputs', 'nar_img']), got "
                            f'{inputs!r}.')
        if not isinstance(inputs, str):
            inputs = list(inputs)
        source = teacher.get('config', teacher.get('model'))
        key = 'config' if 'config' in teacher else 'model'
        self._check_model_config(source, f'model.{where}.{key}', (str, dict, Config))
        revise_keys = check_revise_keys(teacher.get('revise_keys', ()),
                                        'The teacher' if shorthand else f'The teacher {name!r}',
                                        f'model.{where}')
        cfg, file_scope = load_model_config(source)
        cfg = without_pretrained(cfg)  # all teacher weights come from its checkpoint
        scope = infer_model_scope(cfg, teacher.get('scope') or file_scope)
        label = source if isinstance(source, str) else cfg.get('type')
        desc = f'teacher ({label})' if shorthand else f'teacher {name!r} ({label})'
        if teacher.get('cache') is not None:  # values from a store: no model is built
            check_forward_options(teacher, where, trainable)
            fingerprint = teacher_fingerprint(teacher, cfg,
                                              self.student_config.get('data_preprocessor'))
            return CachedTeacher(name, teacher, where, desc, fingerprint, str(label), scope,
                                 config=copy.deepcopy(cfg))
        model = build_model_in_scope(cfg, scope)
        checkpoint = teacher.get('checkpoint')
        if checkpoint is not None:
            load_checkpoint_strict(model, checkpoint, desc, revise_keys=revise_keys)
        normalisation = teacher.get('normalisation')
        if normalisation is None and cfg.get('data_preprocessor') is None:
            # A config without a data_preprocessor (a bare model config, as for timm teachers)
            # says nothing about what the teacher was trained on: the default preprocessor
            # would not normalise at all, so the teacher keeps the student's batch.
            normalisation = 'student'
        view = TeacherView(
            Normalisation.of_preprocessor(self.student.data_preprocessor),
            parse_normalisation(normalisation, model, where), inputs, desc, f'model.{where}')
        precision, channels_last, compile_options = check_forward_options(teacher, where,
                                                                          trainable)
        kind = TrainableTeacher if trainable else Teacher
        t = kind(name, model, scope, checkpoint, str(label), view, teacher.get('stop_early'),
                 config=copy.deepcopy(cfg), precision=precision, channels_last=channels_last,
                 compile=compile_options)
        # Building it drew from torch's generator; a cache of this teacher stores the state
        # after the build, and a cached teacher (which builds nothing) puts it back, so the
        # methods built next initialise exactly as in the live run.
        t.rng_after_build = torch.get_rng_state()
        return t

    def _build_blocks(self, blocks):
        if not isinstance(blocks, dict) or not blocks:
            raise ValueError('`blocks` must be a non-empty dict: name -> dict(student=..., '
                             'teacher=..., method=dict(type=...), loss_weight=...).')
        # An unprefixed point's candidates (not 'self').
        names = [n for n in self._teachers if n != SELF]
        trainable = [n for n, t in self._teachers.items() if t.trainable]
        self.blocks: Dict[str, DistillBlock] = {}
        methods = {}
        for name, cfg in blocks.items():
            if not isinstance(name, str) or not name or 'loss' in name or '.' in name:
                # MMEngine optimises the sum of every logged value whose key contains 'loss':
                # 'distill.<name>.weight' and the method's diagnostics would join it.
                raise ValueError(f'Block {name!r}: a block name is a non-empty string without '
                                 "'loss' or '.' (it is logged as distill.<name>.<term>, and "
                                 "MMEngine optimises every logged value whose key contains "
                                 "'loss'); rename the block, e.g. 'logits' or 'fpn'.")
            if not isinstance(cfg, dict):
                raise TypeError(f'Block {name!r}: a block is a dict(student=..., teacher=..., '
                                f'method=..., loss_weight=...), got {cfg!r}.')
            unknown = set(cfg) - set(BLOCK_KEYS)
            missing = {'student', 'teacher', 'method'} - set(cfg)
            if unknown or missing:
                raise KeyError(f'Block {name!r}: unknown keys {sorted(unknown)}, missing keys '
                               f'{sorted(missing)}; valid keys are {list(BLOCK_KEYS)}.')
            loss_weight = build_loss_weight(cfg.get('loss_weight', 1.0), name,
                                            cfg.get(NEGATIVE_OPT_IN, False))
            methods[name] = _build_method(cfg['method'], name)
            teacher_points = []
            multi = isinstance(cfg['teacher'], (list, tuple))
            for tname, spec in group_teacher_points(cfg['teacher'], names, name):
                if tname == SELF and SELF not in self._teachers:
                    self._teachers[SELF] = SelfTeacher(self.student)
                expanded = self._teachers[tname].expand(
                    spec, f'{self._teacher_desc(tname)} (block {name!r})')
                multi = multi or isinstance(expanded, list)
                teacher_points += [(tname, p) for p in
                                   (expanded if isinstance(expanded, list) else [expanded])]
            learner, student_spec = split_learner_points(cfg['student'], trainable, name)
            learner_model = self.student if learner is None else self._teachers[learner].model
            learner_desc = 'student' if learner is None else self._teacher_desc(learner)
            block = DistillBlock(
                name, expand_points(student_spec, learner_model,
                                    f'{learner_desc} (block {name!r})'),
                teacher_points, multi, methods[name], loss_weight, learner)
            for point in block.student_points:  # fail here, naming the block, on a wrong name
                find_module(learner_model, point.module, f'{learner_desc} (block {name!r})')
            for tname, point in block.teacher_points:
                self._teachers[tname].check_point(
                    point, f'{self._teacher_desc(tname)} (block {name!r})')
            bound = {t: self._teachers[t].bind(
                name, methods[name], [p for n, p in block.teacher_points if n == t])
                for t in block.teacher_names}
            with _in_block(name, type(methods[name]).__name__):
                methods[name].bind_student(learner_model)
                methods[name].bind_teachers(bound)
            self.blocks[name] = block
        self.methods = nn.ModuleDict(methods)
        unread = [n for n in self._teachers if not any(
            n in b.teacher_names or n == b.learner for b in self.blocks.values())]
        if unread:
            raise ValueError(f'Teacher(s) {unread} are read by no block: every teacher must '
                             'feed at least one block (name it in a teacher point, e.g. '
                             f'{unread[0] + ":neck"!r}), or remove it.')

    def _check_init_student_from(self, spec) -> Optional[dict]:
        """Check ``init_student_from`` now (names, prefixes, shapes); the copy itself happens
        in :meth:`init_weights`, after the student's own initialisation."""
        if spec is None:
            return None
        if not isinstance(spec, dict) or set(spec) != {'teacher', 'prefixes'}:
            raise KeyError('init_student_from must be dict(teacher=NAME, prefixes=[...]), got '
                           f'{spec!r}.')
        name = spec['teacher']
        if name not in self.teachers:
            raise KeyError(f'init_student_from: unknown teacher {name!r}; the teachers are '
                           f'{list(self._teachers)}.')
        prefixes = spec['prefixes']
        if isinstance(prefixes, str) or not prefixes or not all(
                isinstance(p, str) and p for p in prefixes):
            raise TypeError('init_student_from.prefixes must be a non-empty list of module '
                            f"names (e.g. ['neck', 'bbox_head']), got {prefixes!r}.")
        self._copy_plan(name, prefixes)  # raises on a missing prefix or a shape mismatch
        return dict(teacher=name, prefixes=list(prefixes))

    def _copy_plan(self, name: str, prefixes) -> Dict[str, torch.Tensor]:
        teacher_state = self._teachers[name].model.state_dict()
        student_state = self.student.state_dict()
        plan = {}
        for prefix in prefixes:
            keys = [k for k in teacher_state if k == prefix or k.startswith(prefix + '.')]
            if not keys:
                top = sorted({k.split('.')[0] for k in teacher_state})
                raise KeyError(f'init_student_from: the teacher {name!r} has no weights under '
                               f'{prefix!r}; its top-level modules are {top}.')
            absent = [k for k in keys if k not in student_state]
            shaped = [f'{k}: teacher {tuple(teacher_state[k].shape)} vs student '
                      f'{tuple(student_state[k].shape)}' for k in keys
                      if k in student_state and teacher_state[k].shape != student_state[k].shape]
            if absent or shaped:
                raise ValueError(
                    f'init_student_from {prefix!r}: the student cannot take the teacher '
                    f'{name!r}\'s weights: {len(absent)} key(s) it lacks {absent[:5]}, '
                    f'{len(shaped)} of another shape {shaped[:5]}.')
            plan.update({k: teacher_state[k] for k in keys})
        return plan

    def init_weights(self):
        super().init_weights()
        # A trainable teacher without a checkpoint starts from its own initialisation, as the
        # student does (after the student's, so the student draws what a plain run draws);
        # one with a checkpoint keeps its loaded weights. (MMEngine does not reach a model
        # inside a ModuleDict, which has no init_weights of its own.)
        for t in self._teachers.values():
            if t.trainable and t.checkpoint is None and hasattr(t.model, 'init_weights'):
                t.model.init_weights()
        if self.init_student_from is None:
            return
        name, prefixes = self.init_student_from['teacher'], self.init_student_from['prefixes']
        plan = self._copy_plan(name, prefixes)
        with torch.no_grad():
            student_state = self.student.state_dict()
            for key, value in plan.items():
                student_state[key].copy_(value)
        print_log(f'init_student_from: copied {len(plan)} tensors under {prefixes} from the '
                  f'{self._teachers[name].desc} into the student.', logger='current',
                  level=logging.INFO)

    def _blocks_using(self, point: RecordPoint, teacher: Optional[str] = None) -> List[str]:
        """Blocks that read ``point`` in the student (``teacher=None``) or in a teacher."""
        return [n for n, b in self.blocks.items()
                if (point in b.student_points if teacher is None
                    else (teacher, point) in b.teacher_points)]

    def _models(self):
        """(teacher name or None for the student, description, model, recorder) of every
        model that runs a forward (the student as its own teacher does not run again)."""
        yield None, 'student', self.student, self.student_recorder
        for name, t in self._teachers.items():
            if t.runs:
                yield name, self._teacher_desc(name), t.model, t.recorder

    def _learner_recorder(self, block: DistillBlock) -> ModuleRecorder:
        """The recorder of the model a block's ``student`` points are in."""
        return (self.student_recorder if block.learner is None
                else self._teachers[block.learner].recorder)

    @staticmethod
    def _check_dry_run_input_shape(shape) -> tuple:
        """``dry_run_input_shape`` as a tuple (None: the default), or an error naming the
        setting, the value and what is valid, before anything is allocated."""
        if shape is None:
            return DEFAULT_DRY_RUN_INPUT_SHAPE
        valid = ('four integers (N, C, H, W), each >= 1, with at most '
                 f'{MAX_DRY_RUN_INPUT_ELEMENTS:,} elements in all (MAX_DRY_RUN_INPUT_ELEMENTS), '
                 'e.g. (2, 3, 224, 224): a small batch at the training crop size, with the '
                 f'channels of the images; or None for {DEFAULT_DRY_RUN_INPUT_SHAPE}')
        if not isinstance(shape, (list, tuple)) or not all(
                isinstance(d, numbers.Integral) and not isinstance(d, bool) for d in shape):
            raise TypeError(f'model.dry_run_input_shape={shape!r}: it must be {valid}.')
        shape = tuple(int(d) for d in shape)
        if len(shape) != 4 or min(shape) < 1:
            raise ValueError(f'model.dry_run_input_shape={shape!r}: it must be {valid}.')
        elements = math.prod(shape)
        if elements > MAX_DRY_RUN_INPUT_ELEMENTS:
            raise ValueError(f'model.dry_run_input_shape={shape!r} is a batch of {elements:,} '
                             f'elements: it must be {valid}. The dry run only sizes the '
                             'methods; it needs no large batch.')
        return shape

    #: Errors of a model's forward in the dry run that are reported with the model and the
    #: dry-run batch named (anything else is raised as it is).
    _DRY_RUN_ERRORS = (RuntimeError, ValueError, TypeError, IndexError, KeyError,
                       AttributeError, AssertionError, NotImplementedError)

    @torch.no_grad()
    def _dry_run(self, input_shape):
        """Run every model once on random input: size every method, find where each teacher
        forward can stop, and check that every recorded value is usable."""
        modes = {m: m.training for m in self.modules()}
        self.eval()  # the student and any trainable teacher: BN statistics untouched
        inputs = torch.randn(*input_shape)
        try:
            for name, desc, model, recorder in self._models():
                try:
                    view = inputs if name is None else self._teachers[name].view(inputs, None)
                    self._record(recorder, model, view, dry_run=True)
                except RecordPointError as e:
                    point = next(p for p, err in recorder.errors.items() if err is e)
                    raise with_message(
                        e, f'Block {", ".join(map(repr, self._blocks_using(point, name)))} '
                        f'({type(model).__name__}): {e}') from e
                except self._DRY_RUN_ERRORS as e:
                    text = e.args[0] if len(e.args) == 1 and isinstance(e.args[0], str) \
                        else str(e)
                    if text.startswith(('Insert ', 'Block ')):
                        raise  # it names its cause and the setting already
                    raise with_message(
                        e, f'The {desc} ({type(model).__name__}) failed in the dry run, the '
                        'one forward of every model at build that sizes the methods, on a '
                        f'random batch of shape {tuple(input_shape)} '
                        f'(model.dry_run_input_shape): {text.rstrip(".")}. If that batch does '
                        'not fit the model (its channels, or a size too small for the '
                        'network), set model.dry_run_input_shape to the shape of a real '
                        'training batch (N, C, H, W).') from e
        finally:
            for m, mode in modes.items():
                m.training = mode
        for t in self._teachers.values():
            t.prepare_dry_run(input_shape[0])  # a kind that does not run (a cache)
            if t.kind != 'frozen':  # a trainable one runs whole, for its own losses
                continue
            order = t.recorder.call_order
            stop = self.stop_teacher_early if t.stop_early is None else t.stop_early
            t.recorder.stop_after(order[-1] if stop else None, order.count(order[-1]))
        for name, block in self.blocks.items():
            for point in block.student_points:
                self._check_dry_run_value(name, block.learner, point)
            for tname, point in block.teacher_points:
                self._check_dry_run_value(name, tname, point)
            values = dict(student=block.student_value(self._learner_recorder(block)),
                          teacher=block.teacher_value(self._teachers))
            with _in_block(name, block.method_type):
                block.method.build(values['student'], values['teacher'])
            block.built_signature = {k: _signature(v) for k, v in values.items()}
            block.built_shapes = {k: _shapes(v) for k, v in values.items()}
        self._clear_records()

    def _clear_records(self):
        for _, _, _, recorder in self._models():
            recorder.data = {}

    def _check_dry_run_value(self, block: str, teacher: Optional[str], point: RecordPoint):
        if teacher is None:
            model, recorder, side = self.student, self.student_recorder, 'student'
        else:
            t = self._teachers[teacher]
            model, recorder, side = t.model, t.recorder, self._teacher_desc(teacher)
        where = f'Block {block!r}: the {side} ({type(model).__name__}) at {str(point)!r}'
        value = recorder.get(point)
        tensors = _tensors(value)
        if not tensors:
            raise ValueError(
                where + f' gives no tensor ({type(value).__name__}'
                f'{" of length 0" if isinstance(value, (tuple, list)) else ""}); record '
                'a module whose output (or input, "@input") is a tensor or tuple of tensors.')
        for i, x in enumerate(tensors):
            if x.is_floating_point() and not torch.isfinite(x).all():
                kind = 'NaN' if torch.isnan(x).any() else 'inf'
                if teacher is not None and t.kind == 'cached':
                    raise NonFiniteError(
                        f'Block {block!r}: the cache {t.folder!r} of the {side} holds {kind} '
                        f'values at {str(point)!r} (its first samples): the teacher gave '
                        'non-finite values when the cache was built.')
                cause = (f'the teacher\'s weights or buffers ({t.checkpoint!r})'
                         if teacher is not None and t.kind == 'frozen'
                         else f'the {side}\'s initial weights')
                raise NonFiniteError(
                    where + f' gives {kind} values'
                    f'{f" (level {i})" if len(tensors) > 1 else ""} in the dry run on a '
                    f'finite random batch of shape {self.dry_run_input_shape}: {cause} '
                    'produce non-finite activations.')

    @staticmethod
    def _record(recorder, model, inputs, data_samples=None, dry_run=False):
        """Forward ``model`` in tensor mode with ``recorder`` on (values land in the recorder).

        The dry run goes all the way: where to stop early is found from it. It has no data
        samples, which some models need after the recorded modules (a two-stage detector's RPN
        needs image metas): an error raised once every point has been recorded is ignored,
        unless a record point itself failed (a wrong index).
        """
        if dry_run:
            recorder.stop_after(None)
        recorder.start()
        try:
            model(inputs, data_samples, mode='tensor')
        except StopForward:
            pass
        except Exception:
            recorder.enabled = False
            if recorder.errors:
                raise next(iter(recorder.errors.values()))
            missing = [str(p) for p in recorder.points if p not in recorder.data]
            if not dry_run or missing:
                raise
        recorder.finish()

    @property
    def privileged_fields(self) -> List[str]:
        """Data-sample fields some teacher reads (``inputs='<field>'``): never shown to the
        student."""
        return sorted({f for t in self._teachers.values() if t.view is not None
                       for f in t.view.fields})

    def student_samples(self, data_samples):
        """The data samples the student is given: ``data_samples`` without the teachers'
        privileged fields (a reference image, ...). New sample objects with the same metainfo
        and every other field (shared, not copied); the originals are left for the teachers.
        """
        hidden = self.privileged_fields
        if not hidden or not data_samples:
            return data_samples
        out = []
        for sample in data_samples:
            if not any(k in sample for k in hidden):
                out.append(sample)
                continue
            kept = type(sample)(metainfo=sample.metainfo)
            kept.set_data({k: v for k, v in sample.items() if k not in hidden})
            out.append(kept)
        return out

    def record_teachers(self, inputs, data_samples=None,
                        grad: bool = False) -> Dict[str, torch.Tensor]:
        """Run every teacher on its view of the batch (a frozen one without grad unless
        ``grad``, a trainable one in ``loss`` mode); values land in
        ``teacher_info(name).recorder.data``. Returns the trainable teachers' own losses as
        ``{'<name>.loss_*': ...}``."""
        losses = {}
        for name, t in self._teachers.items():
            for key, value in t.record(inputs, data_samples, self._record, grad).items():
                losses[f'{name}.{key}'] = value
        return losses

    # ------------------------------------------------------------------ modes
    def forward(self, inputs, data_samples=None, mode: str = 'tensor'):
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode in ('predict', 'tensor'):
            name = self._eval_teacher_name()
            if name is None:
                predicted = (self._teacher_predictions(inputs, data_samples)
                             if mode == 'predict' and self.val_teachers else None)
                outputs = self.student(inputs, self.student_samples(data_samples), mode=mode)
                for out, teachers in zip(outputs, predicted or ()):
                    out.teacher_predictions = teachers
                return outputs
            t = self._teachers[name]
            return t.model(t.view(inputs, data_samples), data_samples, mode=mode)
        raise RuntimeError(f'Invalid mode {mode!r}: only "loss", "predict" and "tensor" are '
                           'supported.')

    def loss(self, inputs, data_samples) -> Dict[str, torch.Tensor]:
        self._check_batch_not_empty(inputs, data_samples)
        teacher_losses = self.record_teachers(inputs, data_samples)

        self.student_recorder.start()
        try:
            student_losses = self.student(inputs, self.student_samples(data_samples),
                                          mode='loss')
        except Exception:
            self.student_recorder.enabled = False
            raise
        self.student_recorder.finish()

        losses = {f'student.{k}': v for k, v in student_losses.items()}
        losses.update(teacher_losses)
        values = {name: (block.student_value(self._learner_recorder(block)),
                         block.teacher_value(self._teachers))
                  for name, block in self.blocks.items()}
        if not self._shapes_checked:
            self._check_shapes_as_built(values)
            self._shapes_checked = True
        for name, block in self.blocks.items():
            s, t = values[name]
            weight = block.loss_weight.current()
            for k, v in self._block_terms(name, block, s, t, data_samples).items():
                # Keys without 'loss' are diagnostics: logged, not optimised, not weighted.
                losses[f'distill.{name}.{k}'] = v * weight if 'loss' in k else v
            # Every block's weight, constant or scheduled, so that a curve of the weighted
            # terms can be read against it (one scalar per block per iteration).
            losses[f'distill.{name}.weight'] = torch.tensor(float(weight))
        self._skip_step = self._check_finite_losses(losses, inputs)
        # Release recorded tensors (and their graphs) once the losses hold what they need.
        self._clear_records()
        return losses

    @staticmethod
    def _check_batch_not_empty(inputs, data_samples) -> None:
        """An empty training batch (no sample) is refused by name: the models would fail on it
        deep inside (a reshape of 0 elements) without saying that the batch was empty."""
        n = inputs.shape[0] if isinstance(inputs, torch.Tensor) and inputs.dim() else (
            len(inputs) if isinstance(inputs, (list, tuple)) else None)
        if n == 0 or (n is None and data_samples is not None and len(data_samples) == 0):
            shape = tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else None
            raise ValueError(
                f'The training batch is empty (inputs {shape or type(inputs).__name__}, '
                f'{len(data_samples or [])} data samples): there is nothing to distil. Check '
                'train_dataloader: its dataset (its length, filter_cfg, indices), its sampler '
                'and batch_size (>= 1); a custom collate_fn must not drop every sample.')

    @staticmethod
    def _block_terms(name: str, block: DistillBlock, student, teacher, data_samples):
        """A block's method on this batch; an error names the block and its method, and the
        one a small batch causes in a method's BatchNorm says what to change."""
        try:
            with _in_block(name, block.method_type):
                return block.method(student, teacher, data_samples)
        except ValueError as e:
            if 'Expected more than 1 value per channel when training' not in str(e):
                raise
            n = len(data_samples) if data_samples is not None else _tensors(student)[0].shape[0]
            raise ValueError(
                f'{str(e).rstrip(".")}. The method\'s BatchNorm normalises each channel over '
                f'the batch and needs more than one value per channel in training; this batch '
                f'has {n} sample(s), each giving one value per channel there (logits, pooled '
                'features). Set '
                'train_dataloader.batch_size >= 2 and train_dataloader.drop_last=True (a last, '
                'partial batch can hold a single sample).') from e

    def _check_shapes_as_built(self, values):
        """On the first real batch: each block's values must have the rank and channels the
        method was built for in the dry run (a too-small dry run builds the wrong branch)."""
        for name, block in self.blocks.items():
            got = dict(zip(('student', 'teacher'), values[name]))
            for side in ('student', 'teacher'):
                if _signature(got[side]) != block.built_signature[side]:
                    raise ValueError(
                        f'Block {name!r} ({block.method_type}): the {side} values have shapes '
                        f'{_shapes(got[side])} in training, but the method was built for '
                        f'{block.built_shapes[side]} by the dry run '
                        f'(dry_run_input_shape={self.dry_run_input_shape}): the number of '
                        'levels, the rank, the channels or a size-1 dimension differ. Set '
                        'model.dry_run_input_shape to the shape of a real batch.')

    # ------------------------------------------------------------------ non-finite losses
    @staticmethod
    def _limit_text(limit: dict) -> str:
        return 'dict(' + ', '.join(f'{k}={v}' for k, v in limit.items()) + ')'

    @classmethod
    def _check_skip_limit(cls, limit) -> Dict[str, Optional[int]]:
        """``nonfinite_skip_limit`` with its defaults filled in, or an error naming what is
        valid."""
        valid = ('nonfinite_skip_limit must be None or a dict with keys '
                 f'{list(DEFAULT_NONFINITE_SKIP_LIMIT)}, each an integer >= 1 or None (no '
                 f'limit); default {cls._limit_text(DEFAULT_NONFINITE_SKIP_LIMIT)}')
        if limit is None:
            return dict(DEFAULT_NONFINITE_SKIP_LIMIT)
        if not isinstance(limit, dict):
            raise TypeError(f'nonfinite_skip_limit={limit!r}: {valid}.')
        unknown = sorted(set(limit) - set(DEFAULT_NONFINITE_SKIP_LIMIT))
        if unknown:
            raise ValueError(f'nonfinite_skip_limit has unknown key(s) {unknown}: {valid}.')
        for key, value in limit.items():
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f'nonfinite_skip_limit.{key}={value!r} '
                                f'({type(value).__name__}): {valid}.')
            if value < 1:
                raise ValueError(f'nonfinite_skip_limit.{key}={value!r}: {valid} (to stop at '
                                 "the first non-finite loss, use nonfinite_loss='raise').")
        return {**DEFAULT_NONFINITE_SKIP_LIMIT, **limit}

    def _check_skip_allowed(self, message: str) -> None:
        """Stop the run (NonFiniteError) when skipping one more step would exceed
        ``nonfinite_skip_limit``. The counts are the same on every rank (the decision to skip
        is all-reduced), so in DDP every rank stops at the same step."""
        limit = self.nonfinite_skip_limit
        setting = self._limit_text(limit)
        counts = dict(consecutive=self.nonfinite_consecutive, total=self.nonfinite_skips)
        reached = [k for k in ('consecutive', 'total')
                   if limit[k] is not None and counts[k] >= limit[k]]
        if not reached:
            return
        key = reached[0]
        why = ('non-finite losses on consecutive batches usually mean that the student '
               'diverged (lower the learning rate or a loss weight)' if key == 'consecutive'
               else 'each skipped step is a batch the student never learnt from')
        raise NonFiniteError(
            message + f" Policy nonfinite_loss='skip' with nonfinite_skip_limit={setting}: "
            f'steps skipped already: {counts["consecutive"]} in a row, {counts["total"]} in '
            f'all; the {key} limit is reached and the run stops instead of skipping this one '
            f'too: {why}. If such batches are expected, raise '
            f'model.nonfinite_skip_limit.{key} (an integer, or None for no limit).')

    def _check_finite_losses(self, losses, inputs) -> bool:
        """Apply the ``nonfinite_loss`` policy; True when this step must be skipped."""
        terms = [(k, v) for k, v in losses.items()
                 if 'loss' in k and isinstance(v, torch.Tensor)]
        if not terms:
            return False
        bad = torch.stack([~torch.isfinite(v.detach()).all() for _, v in terms]).any()
        if self.nonfinite_loss == 'skip' and torch_dist.is_available() and \
                torch_dist.is_initialized():
            # Every rank must skip the same step, or DDP's gradient all-reduce would hang.
            flag = bad.to(torch.float32).reshape(1)
            torch_dist.all_reduce(flag, op=torch_dist.ReduceOp.MAX)
            bad = flag[0] > 0
        if not bad.item():
            self.nonfinite_consecutive = 0
            return False
        message = self._describe_nonfinite(terms, inputs)
        if self.nonfinite_loss == 'raise':
            raise NonFiniteError(message + " Policy nonfinite_loss='raise' (set "
                                 "model.nonfinite_loss='skip' to skip such steps instead).")
        self._check_skip_allowed(message)
        self.nonfinite_skips += 1
        self.nonfinite_consecutive += 1
        print_log(message + f" Policy nonfinite_loss='skip': no optimiser step for this batch "
                  f'({self.nonfinite_skips} skipped so far, {self.nonfinite_consecutive} in a '
                  f'row; nonfinite_skip_limit={self._limit_text(self.nonfinite_skip_limit)}).',
                  logger='current', level=logging.WARNING)
        return True

    def _describe_nonfinite(self, terms, inputs) -> str:
        def state(t):
            return 'NaN' if torch.isnan(t).any() else 'inf'
        bad_terms = [f'{k} = {state(v)}' for k, v in terms if not torch.isfinite(v).all()]
        iteration = _current_iteration()
        where = f'at iteration {iteration}' if iteration is not None else 'in this step'
        if not bad_terms:
            return f'Non-finite loss on another rank {where}: skipped on every rank.'
        parts = [f'Non-finite loss {where}: {", ".join(bad_terms)}.']
        if isinstance(inputs, torch.Tensor) and inputs.is_floating_point():
            parts.append('Input batch: ' + ('finite.' if torch.isfinite(inputs).all() else
                                             f'contains {state(inputs)} values.'))
        for _, side, _, recorder in self._models():
            bad = [str(p) for p, calls in recorder.data.items()
                   if any(not torch.isfinite(t).all() for t in _tensors(calls)
                          if t.is_floating_point())]
            parts.append(f"The {side}'s recorded values: " + (
                f'non-finite at {bad}.' if bad else 'all finite.'))
        return ' '.join(parts)

    def train_step(self, data, optim_wrapper):
        return distiller_train_step(self, self, data, optim_wrapper)

def distiller_train_step(model, distiller: Distiller, data, optim_wrapper,
                         after_update=None):
    """MMEngine's train step (``model`` is the distiller or its DDP wrapper), except that a
    step the ``nonfinite_loss='skip'`` policy rejects leaves no trace: no backward, no
    optimiser update, buffers (BN running statistics, which the forward already updated with
    the bad batch) put back, and its non-finite values left out of the log."""
    buffers = list(distiller.buffers()) if distiller.nonfinite_loss == 'skip' else []
    saved = [b.detach().clone() for b in buffers]
    wrappers = _Wrappers(optim_wrapper)
    with wrappers.optim_context(model):
        data = distiller.data_preprocessor(data, True)
        losses = model._run_forward(data, mode='loss')
    parsed_loss, log_vars = distiller.parse_losses(losses)
    if distiller._skip_step:
        distiller._skip_step = False
        optim_wrapper.zero_grad()
        with torch.no_grad():
            for buffer, value in zip(buffers, saved):
                buffer.copy_(value)
        log_vars = {k: v for k, v in log_vars.items() if torch.isfinite(v).all()}
    else:
        wrappers.update_params(parsed_loss)
        if after_update is not None:
            after_update(parsed_loss)
    if distiller.nonfinite_loss == 'skip':
        log_vars['nonfinite_skips'] = torch.tensor(float(distiller.nonfinite_skips))
    return log_vars


class _Wrappers:
    """One optimiser wrapper, or MMEngine's ``OptimWrapperDict`` (one per part of the
    distiller: :class:`mmkd.DistillerOptimWrapperConstructor`), driven as one.

    With several, each part's parameters get gradients only from the loss terms that depend on
    them (a trainable teacher's value is detached where it teaches), so one backward of the
    total loss gives every part its own gradient; then each wrapper steps. That backward is
    the first wrapper's (its gradient accumulation and loss scaling); the wrappers must agree
    on ``accumulative_counts``, and mixed precision (``AmpOptimWrapper``) needs one loss
    scaler, so it is refused with several optimisers.
    """

    def __init__(self, optim_wrapper):
        self.dict = isinstance(optim_wrapper, OptimWrapperDict)
        self.all = list(optim_wrapper.values()) if self.dict else [optim_wrapper]
        if self.dict:
            amp = [n for n, w in optim_wrapper.items() if isinstance(w, AmpOptimWrapper)]
            if amp:
                raise TypeError(
                    f'optim_wrapper: parts {amp} use AmpOptimWrapper; mixed precision with one '
                    'optimiser per part (mmkd.DistillerOptimWrapperConstructor) is not '
                    'supported: their loss scalers would disagree. Use one AmpOptimWrapper '
                    'for all parameters (a plain optim_wrapper), or fp32 parts.')
            counts = {n: w._accumulative_counts for n, w in optim_wrapper.items()}
            if len(set(counts.values())) > 1:
                raise ValueError(f'optim_wrapper: the parts accumulate gradients over '
                                 f'different numbers of steps {counts}; give every part the '
                                 'same accumulative_counts.')

    @contextlib.contextmanager
    def optim_context(self, model):
        with contextlib.ExitStack() as stack:
            for wrapper in self.all:
                stack.enter_context(wrapper.optim_context(model))
            yield

    def update_params(self, loss):
        if not self.dict:
            self.all[0].update_params(loss)
            return
        first = self.all[0]
        first.backward(first.scale_loss(loss))
        for wrapper in self.all[1:]:
            wrapper._inner_count += 1  # one backward served them all
        for wrapper in self.all:
            if wrapper.should_update():
                wrapper.step()
                wrapper.zero_grad()


# Configs and code written for the one-teacher distiller keep working under its old name.
SingleTeacherDistiller = Distiller
MODELS.register_module(name='SingleTeacherDistiller', module=Distiller)
