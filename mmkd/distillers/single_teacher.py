"""The single-teacher distiller: an MMEngine model that wraps a student, a frozen teacher and
a set of distillation blocks.

One training step::

    batch -> student's data_preprocessor -> teacher (no grad, eval mode, hooks record, stops
    after the deepest recorded module) -> student (hooks record, task losses) -> each block's
    method(student_value, teacher_value) -> {'student.loss_*', 'distill.<block>.loss_*'}
    -> non-finite check (raise, or skip the optimiser step) -> optimiser

``predict`` and ``tensor`` modes run the student alone, so the base config's evaluator and
``tools/test.py`` see an ordinary model.

The teacher is deliberately *not* a submodule: ``parameters()``, ``state_dict()``,
``init_weights()``, the optimiser constructor and DDP never see it, so it is never trained,
synchronised, re-initialised or checkpointed, and no paramwise optimiser config logs a line
per frozen teacher parameter. Device and dtype moves (``.to()``, ``.cuda()``, ``.half()``)
still reach it through :meth:`SingleTeacherDistiller._apply`.
"""
import contextlib
import copy
import inspect
import logging
import math
import numbers
from typing import Dict, List, Optional, Sequence, Union

import torch
import torch.distributed as torch_dist
import torch.nn as nn
from mmengine.logging import MessageHub, print_log
from mmengine.model import BaseModel, revert_sync_batchnorm
from mmengine.registry import DefaultScope

from ..recorders import (ModuleRecorder, RecordPoint, RecordPointError, StopForward,
                         expand_points, find_module, parse_point)
from ..registry import MODELS
from .model_builder import (build_model_in_scope, infer_model_scope, load_checkpoint_strict,
                            load_model_config, without_pretrained)

BLOCK_KEYS = ('student', 'teacher', 'method', 'loss_weight')
TEACHER_KEYS = ('config', 'model', 'checkpoint', 'scope', 'revise_keys')
NONFINITE_POLICIES = ('raise', 'skip')
DEFAULT_DRY_RUN_INPUT_SHAPE = (2, 3, 224, 224)


class NonFiniteError(FloatingPointError):
    """A recorded value (dry run) or a loss (training) is NaN or infinite."""


class DistillBlock:
    """One distillation block: where to read in each model, the method, its loss weight.

    ``student``/``teacher`` are a record point (``'neck'``, ``'neck[0]'``, ``'head.fc@input'``,
    a dict) or a list of them; with a list, the method receives a list of values.
    """

    def __init__(self, name: str, student, teacher, method: nn.Module, loss_weight: float = 1.0):
        self.name = name
        self.student_multi = isinstance(student, (list, tuple))
        self.teacher_multi = isinstance(teacher, (list, tuple))
        self.student_points = [parse_point(p) for p in
                               (student if self.student_multi else [student])]
        self.teacher_points = [parse_point(p) for p in
                               (teacher if self.teacher_multi else [teacher])]
        self.method = method
        self.loss_weight = loss_weight
        # What the method was built for in the dry run: {'student': [...], 'teacher': [...]}
        # of (ndim, channels, which trailing dims are 1) per level, and the shapes themselves.
        self.built_signature: Optional[dict] = None
        self.built_shapes: Optional[dict] = None

    @property
    def method_type(self) -> str:
        return type(self.method).__name__

    @staticmethod
    def gather(recorder: ModuleRecorder, points: List[RecordPoint], multi: bool):
        values = [recorder.get(p) for p in points]
        return values if multi else values[0]


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


def _rebuild_error(e: Exception, message: str) -> Exception:
    """The same exception type with ``message`` (for builtin types), else ``e`` with a note."""
    try:
        new = type(e)(message)
    except Exception:  # an exception type with its own constructor
        e.add_note(message)
        return e
    new.__cause__ = e
    return new


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
        raise _rebuild_error(e, f'Block {name!r} ({what}): {text}') from e


def _init_arguments(cls) -> Optional[set]:
    """Keyword arguments ``cls(...)`` accepts, following ``**kwargs`` up the MRO; None if the
    chain ends in an open ``**kwargs`` (anything goes)."""
    accepted = set()
    for klass in cls.__mro__:
        if '__init__' not in vars(klass):
            continue
        if klass in (nn.Module, object):
            return accepted
        params = inspect.signature(vars(klass)['__init__']).parameters.values()
        accepted |= {p.name for p in params if p.name != 'self' and p.kind in (
            p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            return accepted
    return None


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
        accepted = _init_arguments(cls)
        unknown = sorted(set(cfg) - {'type'} - (accepted or set()))
        if accepted is not None and unknown:
            raise TypeError(f'Block {block_name!r}: {cls.__name__} got unknown argument(s) '
                            f'{unknown}; its arguments are {sorted(accepted)}.')
        with _in_block(block_name, cls.__name__):
            return MODELS.build(cfg)


def _check_loss_weight(value, block_name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(
            value):
        raise TypeError(f'Block {block_name!r}: loss_weight must be a finite number, got '
                        f'{value!r} ({type(value).__name__}).')
    return float(value)


def _normalisation(preprocessor) -> Optional[dict]:
    """Mean, std and channel flip of an OpenMMLab image data preprocessor (None if unknown)."""
    enabled = getattr(preprocessor, '_enable_normalize', None)
    if enabled is None:  # not an image data preprocessor
        return None

    def values(t):
        return [round(float(v), 4) for v in t.flatten()] if enabled and t is not None else None
    # mmengine/mmdet, mmseg and mmpretrain name the channel flip differently.
    flip = any(getattr(preprocessor, name, False)
               for name in ('_channel_conversion', 'channel_conversion', 'to_rgb'))
    return dict(mean=values(getattr(preprocessor, 'mean', None)),
                std=values(getattr(preprocessor, 'std', None)), flip_channels=bool(flip))


def _current_iteration() -> Optional[int]:
    hub = MessageHub.get_current_instance()
    it = hub.get_info('iter') if hub is not None else None
    return None if it is None else int(it) + 1  # the log's 1-based count


# ---------------------------------------------------------------------- the model
@MODELS.register_module()
class SingleTeacherDistiller(BaseModel):
    """Distil one teacher into a student with any number of blocks.

    Args:
        student (dict | str): the student's model config (e.g. ``{{_base_.model}}``) or the path
            of a config whose ``model`` is the student (``'mmdet::...'`` or a local file).
        teacher (dict): ``config`` (a path as above; its ``default_scope`` says which package
            builds it) or ``model`` (a model dict), plus ``checkpoint`` (path or URL, loaded
            strictly and safely) and optionally ``scope`` and ``revise_keys``
            (``[(regex, replacement)]`` applied to the checkpoint's keys, for weights from
            another codebase, e.g. timm).
        blocks (dict): ``name -> dict(student=point(s), teacher=point(s), method=cfg,
            loss_weight=1.0)``; ``method`` is ``dict(type=..., **args)`` or a type name
            (``'LogitKD'``). See :mod:`mmkd.recorders` for point syntax.
        student_scope (str, optional): registry scope of the student; inferred when None.
        dry_run_input_shape (tuple, optional): shape of the random batch run through both
            models at construction to size every method's modules. None: (2, 3, 224, 224);
            ``tools/train.py`` and ``tools/test.py`` fill it from the config's pipeline when the
            config does not set it (see :func:`mmkd.utils.infer_dry_run_input_shape`).
        stop_teacher_early (bool): end the teacher forward after its deepest recorded module.
            Default True.
        eval_teacher (bool): ``predict``/``tensor`` run the teacher instead of the student
            (``tools/test.py --teacher``). Default False.
        nonfinite_loss (str): what a NaN/inf loss does in training. ``'raise'`` (default): stop
            with :class:`NonFiniteError` naming the term, the iteration and whether the inputs
            and the recorded teacher/student values were finite. ``'skip'``: no optimiser step
            for that batch (in DDP every rank skips it together); the count is logged as
            ``nonfinite_skips``.
        init_cfg (dict, optional): as for any BaseModule.

    Training checkpoints hold only the student and the methods (the teacher is reloaded from
    its own checkpoint).
    """

    def __init__(self,
                 student: Union[dict, str],
                 teacher: dict,
                 blocks: Dict[str, dict],
                 student_scope: Optional[str] = None,
                 dry_run_input_shape: Optional[Sequence[int]] = None,
                 stop_teacher_early: bool = True,
                 eval_teacher: bool = False,
                 nonfinite_loss: str = 'raise',
                 data_preprocessor=None,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if nonfinite_loss not in NONFINITE_POLICIES:
            raise ValueError(f'nonfinite_loss={nonfinite_loss!r}: valid values are '
                             f'{list(NONFINITE_POLICIES)}.')
        self.nonfinite_loss = nonfinite_loss
        self.nonfinite_skips = 0
        self._skip_step = False
        self.student = self._build_student(student, student_scope, data_preprocessor)
        # Building the teacher and the methods and the dry run draw random numbers; the torch
        # generator is put back to this point at the end, so the student's init_weights() (run
        # by the Runner after the build) draws what it draws in a plain student run with the
        # same seed: baseline and distilled students start from the same weights.
        rng_after_student = torch.get_rng_state()
        # Both models see the batch prepared by the student's preprocessor.
        self.data_preprocessor = self.student.data_preprocessor
        teacher_model = self._build_teacher(teacher)
        if not (torch_dist.is_available() and torch_dist.is_initialized()):
            # SyncBN (common in mmseg configs) cannot run in a single CPU process; with one
            # process it is plain BN anyway.
            self.student = revert_sync_batchnorm(self.student)
            teacher_model = revert_sync_batchnorm(teacher_model)
        # Frozen for good: no grad, eval mode (BN statistics and dropout fixed), and kept out
        # of the module tree (see the module docstring).
        teacher_model.requires_grad_(False)
        teacher_model.eval()
        self._frozen = dict(teacher=teacher_model)
        self._warn_if_normalisation_differs()
        self.eval_teacher = eval_teacher
        self.stop_teacher_early = stop_teacher_early

        if not isinstance(blocks, dict) or not blocks:
            raise ValueError('`blocks` must be a non-empty dict: name -> dict(student=..., '
                             'teacher=..., method=dict(type=...), loss_weight=...).')
        self.blocks: Dict[str, DistillBlock] = {}
        methods = {}
        for name, cfg in blocks.items():
            if not isinstance(cfg, dict):
                raise TypeError(f'Block {name!r}: a block is a dict(student=..., teacher=..., '
                                f'method=..., loss_weight=...), got {cfg!r}.')
            unknown = set(cfg) - set(BLOCK_KEYS)
            missing = {'student', 'teacher', 'method'} - set(cfg)
            if unknown or missing:
                raise KeyError(f'Block {name!r}: unknown keys {sorted(unknown)}, missing keys '
                               f'{sorted(missing)}; valid keys are {list(BLOCK_KEYS)}.')
            loss_weight = _check_loss_weight(cfg.get('loss_weight', 1.0), name)
            methods[name] = _build_method(cfg['method'], name)
            block = DistillBlock(
                name, expand_points(cfg['student'], self.student, f'student (block {name!r})'),
                expand_points(cfg['teacher'], self.teacher, f'teacher (block {name!r})'),
                methods[name], loss_weight)
            for model, points, desc in ((self.student, block.student_points, 'student'),
                                        (self.teacher, block.teacher_points, 'teacher')):
                for point in points:  # fail here, naming the block, on a wrong module name
                    find_module(model, point.module, f'{desc} (block {name!r})')
            self.blocks[name] = block
        self.methods = nn.ModuleDict(methods)

        self.student_recorder = ModuleRecorder(
            self.student, [p for b in self.blocks.values() for p in b.student_points],
            'student')
        self.teacher_recorder = ModuleRecorder(
            self.teacher, [p for b in self.blocks.values() for p in b.teacher_points],
            'teacher')
        self.dry_run_input_shape = tuple(dry_run_input_shape or DEFAULT_DRY_RUN_INPUT_SHAPE)
        self._dry_run(self.dry_run_input_shape)
        self._shapes_checked = False
        torch.set_rng_state(rng_after_student)

    @property
    def teacher(self) -> nn.Module:
        """The frozen teacher (not a submodule: see the module docstring)."""
        return self._frozen['teacher']

    def _apply(self, fn, recurse=True):
        # .to()/.cuda()/.half() reach the teacher although it is not a submodule.
        super()._apply(fn, recurse)
        if recurse:
            for model in getattr(self, '_frozen', {}).values():
                model._apply(fn)
        return self

    def extra_repr(self) -> str:
        return (f'(teacher): {type(self.teacher).__name__} from {self.teacher_checkpoint!r} '
                '(frozen, not a submodule)')

    # ------------------------------------------------------------------ construction
    def _build_student(self, student, scope, data_preprocessor):
        if isinstance(student, str):
            cfg, file_scope = load_model_config(student)
            scope = scope or file_scope
        else:
            cfg = student
        cfg = copy.deepcopy(cfg)
        # The Runner hands the config's top-level `data_preprocessor` (mmpretrain keeps it
        # there) to the outermost model, i.e. the distiller: it belongs to the student.
        if data_preprocessor is not None and cfg.get('data_preprocessor') is None:
            cfg['data_preprocessor'] = data_preprocessor
        self.student_scope = infer_model_scope(cfg, scope)
        return build_model_in_scope(cfg, self.student_scope)

    def _build_teacher(self, teacher):
        if not isinstance(teacher, dict):
            raise TypeError('`teacher` must be a dict(config=<path>, checkpoint=<path or url>).')
        unknown = set(teacher) - set(TEACHER_KEYS)
        if unknown:
            raise KeyError(f'teacher: unknown keys {sorted(unknown)}; valid keys are '
                           f'{list(TEACHER_KEYS)}.')
        if ('config' in teacher) == ('model' in teacher):
            raise KeyError('teacher: give exactly one of `config` (a config path) or `model` '
                           '(a model dict).')
        if 'checkpoint' not in teacher:
            raise KeyError('teacher: `checkpoint` (path or URL of the trained teacher) is '
                           'required.')
        source = teacher.get('config', teacher.get('model'))
        cfg, file_scope = load_model_config(source)
        cfg = without_pretrained(cfg)  # all teacher weights come from its checkpoint
        self.teacher_scope = infer_model_scope(cfg, teacher.get('scope') or file_scope)
        model = build_model_in_scope(cfg, self.teacher_scope)
        self.teacher_desc = f'teacher ({source if isinstance(source, str) else cfg.get("type")})'
        load_checkpoint_strict(model, teacher['checkpoint'], self.teacher_desc,
                               revise_keys=teacher.get('revise_keys', ()))
        self.teacher_checkpoint = teacher['checkpoint']
        return model

    def _warn_if_normalisation_differs(self):
        """The teacher is fed the student's normalised batch: say so when its own config
        normalises differently (it then sees inputs unlike those it was trained on)."""
        s = _normalisation(self.student.data_preprocessor)
        t = _normalisation(getattr(self.teacher, 'data_preprocessor', None))
        if s is not None and t is not None and s != t:
            print_log(f'The {self.teacher_desc} normalises its inputs with {t} in its own config, '
                      f'but the distiller feeds it the student\'s batch, normalised with {s}. '
                      'If the teacher was trained with its own normalisation, give both '
                      'configs the same data_preprocessor mean/std/channel order.',
                      logger='current', level=logging.WARNING)

    def _blocks_using(self, point: RecordPoint, side: str) -> List[str]:
        return [n for n, b in self.blocks.items()
                if point in (b.student_points if side == 'student' else b.teacher_points)]

    @torch.no_grad()
    def _dry_run(self, input_shape):
        """Run both models once on random input: size every method, find where the teacher
        forward can stop, and check that every recorded value is usable."""
        modes = {m: m.training for m in self.modules()}
        self.student.eval()
        inputs = torch.randn(*input_shape)
        try:
            for side, recorder, model in (('student', self.student_recorder, self.student),
                                          ('teacher', self.teacher_recorder, self.teacher)):
                try:
                    self._record(recorder, model, inputs, dry_run=True)
                except RecordPointError as e:
                    point = next(p for p, err in recorder.errors.items() if err is e)
                    raise _rebuild_error(
                        e, f'Block {", ".join(map(repr, self._blocks_using(point, side)))} '
                        f'({type(model).__name__}): {e}') from e
        finally:
            for m, mode in modes.items():
                m.training = mode
        order = self.teacher_recorder.call_order
        last = order[-1]
        self.teacher_recorder.stop_after(last if self.stop_teacher_early else None,
                                         order.count(last))
        for name, block in self.blocks.items():
            values = {}
            for side, recorder, points, multi in (
                    ('student', self.student_recorder, block.student_points,
                     block.student_multi),
                    ('teacher', self.teacher_recorder, block.teacher_points,
                     block.teacher_multi)):
                self._check_dry_run_values(name, side, recorder, points)
                values[side] = DistillBlock.gather(recorder, points, multi)
            with _in_block(name, block.method_type):
                block.method.build(values['student'], values['teacher'])
            block.built_signature = {k: _signature(v) for k, v in values.items()}
            block.built_shapes = {k: _shapes(v) for k, v in values.items()}
        self.student_recorder.data = {}
        self.teacher_recorder.data = {}

    def _check_dry_run_values(self, block: str, side: str, recorder, points):
        model = self.student if side == 'student' else self.teacher
        where = f'Block {block!r}: the {side} ({type(model).__name__}) at {{point!r}}'
        for point in points:
            value = recorder.get(point)
            tensors = _tensors(value)
            if not tensors:
                raise ValueError(
                    where.format(point=str(point)) + f' gives no tensor ({type(value).__name__}'
                    f'{" of length 0" if isinstance(value, (tuple, list)) else ""}); record '
                    'a module whose output (or input, "@input") is a tensor or tuple of tensors.')
            for i, t in enumerate(tensors):
                if t.is_floating_point() and not torch.isfinite(t).all():
                    kind = 'NaN' if torch.isnan(t).any() else 'inf'
                    cause = (f'the teacher\'s weights or buffers ({self.teacher_checkpoint!r})'
                             if side == 'teacher' else 'the student\'s initial weights')
                    raise NonFiniteError(
                        where.format(point=str(point)) + f' gives {kind} values'
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

    # ------------------------------------------------------------------ modes
    def forward(self, inputs, data_samples=None, mode: str = 'tensor'):
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode in ('predict', 'tensor'):
            model = self.teacher if self.eval_teacher else self.student
            return model(inputs, data_samples, mode=mode)
        raise RuntimeError(f'Invalid mode {mode!r}: only "loss", "predict" and "tensor" are '
                           'supported.')

    def loss(self, inputs, data_samples) -> Dict[str, torch.Tensor]:
        with torch.no_grad():
            self._record(self.teacher_recorder, self.teacher, inputs, data_samples)

        self.student_recorder.start()
        try:
            student_losses = self.student(inputs, data_samples, mode='loss')
        except Exception:
            self.student_recorder.enabled = False
            raise
        self.student_recorder.finish()

        losses = {f'student.{k}': v for k, v in student_losses.items()}
        values = {}
        for name, block in self.blocks.items():
            values[name] = (
                DistillBlock.gather(self.student_recorder, block.student_points,
                                    block.student_multi),
                DistillBlock.gather(self.teacher_recorder, block.teacher_points,
                                    block.teacher_multi))
        if not self._shapes_checked:
            self._check_shapes_as_built(values)
            self._shapes_checked = True
        for name, block in self.blocks.items():
            s, t = values[name]
            for k, v in block.method(s, t, data_samples).items():
                # Keys without 'loss' are diagnostics: logged, not optimised, not weighted.
                losses[f'distill.{name}.{k}'] = v * block.loss_weight if 'loss' in k else v
        self._skip_step = self._check_finite_losses(losses, inputs)
        # Release recorded tensors (and their graphs) once the losses hold what they need.
        self.student_recorder.data = {}
        self.teacher_recorder.data = {}
        return losses

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
            return False
        message = self._describe_nonfinite(terms, inputs)
        if self.nonfinite_loss == 'raise':
            raise NonFiniteError(message + " Policy nonfinite_loss='raise' (set "
                                 "model.nonfinite_loss='skip' to skip such steps instead).")
        self.nonfinite_skips += 1
        print_log(message + f" Policy nonfinite_loss='skip': no optimiser step for this batch "
                  f'({self.nonfinite_skips} skipped so far).', logger='current', level=logging.WARNING)
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
        for side, recorder in (('teacher', self.teacher_recorder),
                               ('student', self.student_recorder)):
            bad = [str(p) for p, calls in recorder.data.items()
                   if any(not torch.isfinite(t).all() for t in _tensors(calls)
                          if t.is_floating_point())]
            parts.append(f"The {side}'s recorded values: " + (
                f'non-finite at {bad}.' if bad else 'all finite.'))
        return ' '.join(parts)

    def train_step(self, data, optim_wrapper):
        return distiller_train_step(self, self, data, optim_wrapper)


def distiller_train_step(model, distiller: SingleTeacherDistiller, data, optim_wrapper,
                         after_update=None):
    """MMEngine's train step (``model`` is the distiller or its DDP wrapper), except that a
    step the ``nonfinite_loss='skip'`` policy rejects leaves no trace: no backward, no
    optimiser update, buffers (BN running statistics, which the forward already updated with
    the bad batch) put back, and its non-finite values left out of the log."""
    buffers = list(distiller.buffers()) if distiller.nonfinite_loss == 'skip' else []
    saved = [b.detach().clone() for b in buffers]
    with optim_wrapper.optim_context(model):
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
        optim_wrapper.update_params(parsed_loss)
        if after_update is not None:
            after_update(parsed_loss)
    if distiller.nonfinite_loss == 'skip':
        log_vars['nonfinite_skips'] = torch.tensor(float(distiller.nonfinite_skips))
    return log_vars
