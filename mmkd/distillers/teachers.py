"""The distiller's teachers: each built in its own package scope, frozen, with its own view of
the batch.

A teacher is declared as ``dict(config=... | model=..., checkpoint=..., [scope, revise_keys,
normalisation, inputs, stop_early])``. What it is fed::

    student batch (N, 3, H, W), normalised by the student's data_preprocessor
      inputs='inputs'   -> re-normalised for the teacher:
                           x_t = (flip(x_s * std_s + mean_s) - mean_t) / std_t,
                           padded borders set to the teacher's pad value
      inputs='<field>'  -> data_samples[i].<field> (C, H', W') raw images stacked, then
                           x_t = (flip(raw) - mean_t) / std_t   (a privileged input, e.g. a
                           reference image the student never sees)
      inputs=['inputs', '<field>', ...]
                        -> each source as raw images in load order (the student's batch
                           un-normalised), concatenated on channels (N, C_1 + C_2 + ..., H, W),
                           then x_t = (raw - mean_t) / std_t with one mean/std per channel:
                           a teacher fed the distorted image and a reference as one 6-channel
                           input (mmkd.StackImages builds the same input for its own training)

Fields a teacher reads are privileged: the distiller removes them from the data samples the
student is given (:meth:`mmkd.distillers.Distiller.student_samples`).

The channel flip (``bgr_to_rgb`` / ``to_rgb``) applies to 3-channel inputs only, as in every
OpenMMLab data preprocessor; a multi-source teacher states its mean/std in load order.

``normalisation`` says which mean/std/channel order the teacher expects: ``None`` (default) reads
them from the teacher's own ``data_preprocessor`` (its config's, like any OpenMMLab model; a
config that declares none, e.g. a bare timm-backbone model config, keeps the student's batch),
``'student'`` feeds the student's batch unchanged, a dict ``dict(mean=[...], std=[...],
bgr_to_rgb=False)`` states them. When student and teacher normalise alike the batch is passed
through untouched (bit-identical to a one-teacher run of earlier versions).

Channel order follows OpenMMLab: images are loaded BGR, a preprocessor with ``bgr_to_rgb``
(``to_rgb`` in mmpretrain) flips them to RGB *before* normalising, and its mean/std are given in
the flipped order.
"""
import contextlib
import logging
import re
from typing import List, Optional, Sequence

import numpy as np
import torch
from mmengine.logging import print_log

from ..recorders import expand_points, find_module

TEACHER_KEYS = ('config', 'model', 'checkpoint', 'scope', 'revise_keys', 'normalisation',
                'inputs', 'stop_early', 'trainable', 'precision', 'channels_last', 'compile',
                'cache')

#: A frozen teacher's forward precision (``precision=``): autocast to this dtype on the
#: teacher's forward only (the student and the methods stay as they are).
PRECISIONS = {'fp32': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}


class Normalisation:
    """Mean and std (``None``: no normalisation) and whether BGR is flipped to RGB first.

    Args:
        mean, std (sequence | tensor, optional): per channel, in the order after the flip.
        flip_channels (bool): reverse the channel order of the raw image before normalising.
        pad_value (float): value of padded borders *after* normalisation (OpenMMLab pads the
            normalised batch).
    """

    def __init__(self, mean=None, std=None, flip_channels=False, pad_value=0.0):
        if (mean is None) != (std is None):
            raise ValueError('normalisation: give both mean and std, or neither.')
        self.mean = None if mean is None else torch.as_tensor(mean, dtype=torch.float32).flatten()
        self.std = None if std is None else torch.as_tensor(std, dtype=torch.float32).flatten()
        if self.std is not None and not (self.std > 0).all():
            raise ValueError(f'normalisation: std must be positive, got {self.std.tolist()}.')
        self.flip_channels = bool(flip_channels)
        self.pad_value = float(pad_value)

    @classmethod
    def of_preprocessor(cls, preprocessor) -> Optional['Normalisation']:
        """What an OpenMMLab image data preprocessor (mmengine, mmdet, mmseg, mmpretrain)
        does; None when ``preprocessor`` is not one."""
        enabled = getattr(preprocessor, '_enable_normalize', None)
        if enabled is None:
            return None
        # mmengine/mmdet, mmseg and mmpretrain name the channel flip and pad value differently.
        flip = any(getattr(preprocessor, name, False)
                   for name in ('_channel_conversion', 'channel_conversion', 'to_rgb'))
        pad = next((getattr(preprocessor, n) for n in ('pad_value', 'pad_val')
                    if isinstance(getattr(preprocessor, n, None), (int, float))), 0.0)
        mean, std = (getattr(preprocessor, 'mean', None), getattr(preprocessor, 'std', None))
        if not enabled or mean is None:
            mean = std = None
        return cls(mean, std, flip, pad)

    def same_as(self, other: 'Normalisation') -> bool:
        def equal(a, b):
            return (a is None and b is None) or (
                a is not None and b is not None and a.shape == b.shape and torch.equal(a, b))
        return (self.flip_channels == other.flip_channels and equal(self.mean, other.mean)
                and equal(self.std, other.std))

    def describe(self) -> dict:
        def values(t):
            return None if t is None else [round(float(v), 4) for v in t]
        return dict(mean=values(self.mean), std=values(self.std),
                    flip_channels=self.flip_channels)

    def _stats(self, x: torch.Tensor):
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return (self.mean.to(x.device, x.dtype).view(shape),
                self.std.to(x.device, x.dtype).view(shape))

    def scale(self, x: torch.Tensor) -> torch.Tensor:
        """``(x - mean) / std`` for ``x`` already in this normalisation's channel order."""
        if self.mean is None:
            return x
        mean, std = self._stats(x)
        return (x - mean) / std

    def flips(self, x: torch.Tensor) -> bool:
        """Whether the channel flip applies to ``x``: 3-channel images only (OpenMMLab's
        preprocessors leave grey and multi-source inputs in load order)."""
        return self.flip_channels and x.dim() > 1 and x.shape[1] == 3

    def normalise(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw images (N, C, ...) in the loaded channel order -> this normalisation."""
        x = raw if raw.is_floating_point() else raw.float()
        return self.scale(x.flip(1) if self.flips(x) else x)

    def denormalise(self, x: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`normalise` up to the flip: values in this normalisation's
        channel order (flipped if it flips), unnormalised."""
        if self.mean is None:
            return x
        mean, std = self._stats(x)
        return x * std + mean


def _check_channels(norm: Normalisation, x: torch.Tensor, who: str, setting: str):
    """A mean/std of one value, or one per channel of ``x``; else an error naming whose
    normalisation it is and the setting that states it."""
    if norm.mean is not None and x.dim() > 1 and norm.mean.numel() not in (1, x.shape[1]):
        raise ValueError(f'{who}: the normalisation has {norm.mean.numel()} channels (mean '
                         f'{norm.describe()["mean"]}) but the batch has {x.shape[1]} (shape '
                         f'{tuple(x.shape)}): give one mean/std value per input channel, or '
                         f'one for all, in {setting}.')


def _is_image(value) -> bool:
    """A (C, H, W) tensor or array of real numbers."""
    if isinstance(value, torch.Tensor):
        return value.dim() == 3 and value.dtype != torch.bool and not value.is_complex()
    return isinstance(value, np.ndarray) and value.ndim == 3 and (
        np.issubdtype(value.dtype, np.integer) or np.issubdtype(value.dtype, np.floating))


class TeacherView:
    """Turns the student's batch into what one teacher is fed (see the module docstring).

    Args:
        student (Normalisation | None): the student's preprocessor (None: not an image
            preprocessor, the batch passes through unchanged).
        teacher (Normalisation | None): the teacher's; None feeds the student's batch.
        inputs (str | list[str]): ``'inputs'``, the name of a data-sample field holding a raw
            image, or a list of those, concatenated on channels.
        who (str): the teacher, for error messages.
        setting (str): where the teacher is configured (``'model.teachers.det'``), for error
            messages that say which key to change.
    """

    def __init__(self, student: Optional[Normalisation], teacher: Optional[Normalisation],
                 inputs='inputs', who: str = 'teacher', setting: str = 'model.teacher'):
        self.student, self.teacher, self.inputs, self.who = student, teacher, inputs, who
        self.setting = setting
        self.sources = [inputs] if isinstance(inputs, str) else list(inputs)
        self.identity = inputs == 'inputs' and (
            teacher is None or student is None or teacher.same_as(student))
        self._check_channels_at_build()

    def _check_channels_at_build(self):
        """Fed the student's batch, the teacher's mean/std need one value per channel of that
        batch, whose channel count the student's preprocessor states (one mean per channel):
        a wrong count fails here, at build, not in the first forward."""
        if self.identity or self.inputs != 'inputs' or self.student is None or \
                self.student.mean is None or self.teacher is None or self.teacher.mean is None:
            return
        channels, given = self.student.mean.numel(), self.teacher.mean.numel()
        if channels > 1 and given not in (1, channels):
            raise ValueError(
                f"{self.who}: {self.setting}.normalisation has {given} channels (mean "
                f"{self.teacher.describe()['mean']}) but the teacher is fed the student's "
                f"batch, which has {channels} (the student's data_preprocessor normalises "
                f'{channels}): give one mean/std value per channel, or one for all, in '
                f"{self.setting}.normalisation (or normalisation='student' to feed the "
                "student's batch as is).")

    @property
    def fields(self) -> List[str]:
        """The data-sample fields this teacher reads (privileged: the student never gets
        them)."""
        return [s for s in self.sources if s != 'inputs']

    def __call__(self, inputs, data_samples=None):
        if not isinstance(self.inputs, str):
            return self._stacked(inputs, data_samples)
        if self.inputs != 'inputs':
            return self._field(inputs, data_samples)
        if self.identity or not isinstance(inputs, torch.Tensor):
            return inputs
        _check_channels(self.student, inputs, f"{self.who}, the student's batch",
                        "the student's data_preprocessor")
        raw = self.student.denormalise(inputs)  # student's channel order
        if self.student.flips(raw) != self.teacher.flips(raw):
            raw = raw.flip(1)  # now in the order the teacher's mean/std are given in
        _check_channels(self.teacher, raw, self.who, f'{self.setting}.normalisation')
        out = self.teacher.scale(raw)
        # Padding is restored in place: never in the student's own batch.
        return self._restore_padding(out.clone() if out is inputs else out, data_samples)

    def _restore_padding(self, x: torch.Tensor, data_samples):
        """Borders the student's preprocessor padded get the teacher's pad value, as the
        teacher's own preprocessor would give them (OpenMMLab pads after normalising)."""
        if x.dim() != 4 or not data_samples:
            return x
        height, width = x.shape[-2:]
        for i, sample in enumerate(data_samples):
            shape = getattr(sample, 'metainfo', {}).get('img_shape')
            if shape is None:
                continue
            h, w = int(shape[0]), int(shape[1])
            if h < height:
                x[i, :, h:, :] = self.teacher.pad_value
            if w < width:
                x[i, :, :, w:] = self.teacher.pad_value
        return x

    def _field(self, inputs, data_samples):
        raw = self._raw_field(self.inputs, inputs, data_samples)
        if self.teacher is not None:
            _check_channels(self.teacher, raw, f'{self.who}, fed data_samples[i].{self.inputs}',
                            f'{self.setting}.normalisation')
        out = self.teacher.normalise(raw) if self.teacher else raw.float()
        if isinstance(inputs, torch.Tensor) and inputs.is_floating_point():
            out = out.to(inputs.dtype)
        return out

    def _raw_field(self, field: str, inputs, data_samples) -> torch.Tensor:
        """(N, C, H, W) raw images of ``data_samples[i].<field>`` in load order."""
        if not data_samples:
            # The dry run has no data samples: a random image of the student's batch shape.
            if isinstance(inputs, torch.Tensor):
                return inputs
            raise ValueError(f'{self.who} reads data_samples[i].{field}, but this batch '
                             'has no data samples.')
        missing = [i for i, s in enumerate(data_samples) if field not in s]
        if missing:
            raise KeyError(
                f'{self.who} reads its input from the data samples\' field {field!r}, '
                f'which samples {missing[:5]} lack: the dataset pipeline must add it (e.g. '
                f"dict(type='mmkd.PackImageField', keys=[{field!r}], pack=<the Pack* "
                'transform>); see docs/multi_teacher.md).')
        images = [self._image(getattr(s, field), field, i) for i, s in enumerate(data_samples)]
        shapes = {tuple(t.shape) for t in images}
        if len(shapes) > 1:
            raise ValueError(f'{self.who}: the {field!r} images of one batch must have '
                             f'one shape to be stacked, got {sorted(shapes)}.')
        raw = torch.stack(images)
        return raw.to(inputs.device) if isinstance(inputs, torch.Tensor) else raw

    def _image(self, value, field: str, index: int) -> torch.Tensor:
        """``data_samples[index].<field>`` as a tensor, if it is an image: a (C, H, W) tensor
        or array of numbers, as :class:`mmkd.PackImageField` packs one. A label, a score or a
        string would otherwise be stacked into a batch of the wrong rank, or fail inside
        torch without naming the field."""
        if _is_image(value):
            return torch.as_tensor(value)
        shape = f' of shape {tuple(value.shape)}' if hasattr(value, 'shape') else ''
        raise TypeError(
            f'{self.who} reads its input from data_samples[i].{field} ({self.setting}.inputs='
            f'{self.inputs!r}), but sample {index} holds {type(value).__name__}{shape} there, '
            'not an image: an image field holds a (C, H, W) tensor or array of numbers (what '
            f"mmkd.PackImageField packs, e.g. dict(type='mmkd.PackImageField', "
            f"keys=[{field!r}], pack=...)). Set {self.setting}.inputs to 'inputs' (the "
            "student's batch) or to the field of such an image.")

    def _raw_inputs(self, inputs: torch.Tensor) -> torch.Tensor:
        """The student's normalised batch back to raw images in load order."""
        if self.student is None:
            return inputs
        _check_channels(self.student, inputs, f"{self.who}, the student's batch",
                        "the student's data_preprocessor")
        raw = self.student.denormalise(inputs)
        return raw.flip(1) if self.student.flips(raw) else raw

    def _stacked(self, inputs, data_samples):
        parts = []
        for source in self.sources:
            raw = (self._raw_inputs(inputs) if source == 'inputs' else
                   self._raw_field(source, inputs, data_samples))
            parts.append(raw if raw.is_floating_point() else raw.float())
        sizes = {tuple(p.shape[2:]) for p in parts}
        if len(sizes) > 1:
            raise ValueError(f'{self.who}: its sources {self.sources} must have one spatial '
                             f'size to be concatenated, got {[tuple(p.shape) for p in parts]}.')
        raw = torch.cat(parts, dim=1)
        if self.teacher is not None:
            _check_channels(self.teacher, raw, f'{self.who}, fed {self.sources} on channels',
                            f'{self.setting}.normalisation')
        out = self.teacher.normalise(raw) if self.teacher else raw
        if isinstance(inputs, torch.Tensor) and inputs.is_floating_point():
            out = out.to(inputs.dtype)
        return out


def parse_normalisation(spec, teacher_model, who: str) -> Optional[Normalisation]:
    """A teacher's ``normalisation`` key -> Normalisation (None: the student's batch as is)."""
    if spec is None:
        return Normalisation.of_preprocessor(getattr(teacher_model, 'data_preprocessor', None))
    if spec == 'student':
        return None
    if isinstance(spec, dict):
        unknown = set(spec) - {'mean', 'std', 'bgr_to_rgb', 'pad_value'}
        if unknown:
            raise KeyError(f'{who}: normalisation got unknown keys {sorted(unknown)}; valid '
                           "keys are ['mean', 'std', 'bgr_to_rgb', 'pad_value'].")
        return Normalisation(spec.get('mean'), spec.get('std'), spec.get('bgr_to_rgb', False),
                             spec.get('pad_value', 0.0))
    raise ValueError(f"{who}: normalisation must be None (the teacher config's "
                     "data_preprocessor), 'student' (the student's batch as is) or "
                     f'dict(mean=..., std=..., bgr_to_rgb=...), got {spec!r}.')


REVISE_KEYS_EXAMPLE = r"[(r'^module\.', ''), (r'^head\.', 'head.fc.')]"


def check_revise_keys(spec, who: str, setting: str) -> list:
    """A teacher's ``revise_keys``: a list of ``(regex, replacement)`` string pairs, each
    regex compiled and each replacement parsed here, so a typo fails at build naming the
    teacher and the setting (not inside ``re`` while the checkpoint loads)."""
    valid = (f'{setting}.revise_keys must be a list of (regex, replacement) string pairs, '
             f'applied in order to every key of the checkpoint, e.g. {REVISE_KEYS_EXAMPLE}')
    pairs_ok = isinstance(spec, (list, tuple)) and all(
        isinstance(p, (list, tuple)) and len(p) == 2 and all(isinstance(x, str) for x in p)
        for p in spec)
    if not pairs_ok:
        raise TypeError(f'{who}: {valid}; got {spec!r}.')
    for pattern, replacement in spec:
        try:
            re.compile(pattern).sub(replacement, '')  # parses the replacement's group refs
        except re.error as e:
            raise ValueError(f'{who}: {setting}.revise_keys has ({pattern!r}, {replacement!r}), '
                             f'which re cannot use: {e}. {valid}.') from None
    return [tuple(p) for p in spec]


class TeacherKind:
    """What the distiller asks of every kind of teacher besides :meth:`record` and
    :meth:`get`, answered here for a kind with a model (``self.model``): where its record
    points are, and what a method that reads the teacher's own modules is given."""
    model = None

    def expand(self, spec, where: str):
        """A block's teacher point(s), wildcards expanded against the model."""
        return expand_points(spec, self.model, where)

    def check_point(self, point, where: str) -> None:
        """Fail here, naming the block (``where``), on a point the teacher does not have."""
        find_module(self.model, point.module, where)

    def bind(self, block: str, method, points) -> object:
        """The model handed to ``method.bind_teachers`` for a block reading ``points``."""
        return self.model

    def attach(self, student_recorder) -> None:
        """A kind without a forward of its own is given the student's recorder."""

    def prepare_dry_run(self, batch_size: int) -> None:
        """Values for the build's dry run, for a kind that does not run in it."""


class Teacher(TeacherKind):
    """One frozen teacher: its model (kept out of the distiller's module tree), where its
    weights came from, its recorder and how it sees the batch.

    This is the first *kind* of teacher; the others (:mod:`mmkd.distillers.teacher_kinds`:
    the student itself, a trainable teacher) share its interface, which is all the distiller
    uses: :meth:`record` (run on this batch; returns the teacher's own losses, none here) and
    :meth:`get` (the recorded value of a point).
    """
    kind = 'frozen'
    #: Whether the teacher is a submodule that learns (checkpointed, optimised).
    trainable = False
    #: Whether it runs a forward of its own (the student itself does not).
    runs = True

    def __init__(self, name: str, model, scope: str, checkpoint: str, source: str,
                 view: TeacherView, stop_early: Optional[bool] = None, config=None,
                 precision: str = 'fp32', channels_last: bool = False,
                 compile: Optional[dict] = None):
        self.name, self.model, self.scope = name, model, scope
        self.checkpoint, self.source, self.view = checkpoint, source, view
        self.stop_early = stop_early
        self.config = config  # the model dict it was built from (export of a trainable one)
        self.recorder = None  # set once the blocks are known
        self.desc = f'teacher {name!r} ({source})'
        # The forward options (issue 34): autocast to a lower precision on this teacher's
        # forward only, and the channels-last memory layout for its weights and its input.
        self.precision, self.channels_last = precision, channels_last
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        # torch.compile's options (None: eager); compiled at the first step, and run eagerly
        # from then on if compiling or the compiled forward fails (with a warning).
        self.compile, self._compiled = compile, None

    def _forward_model(self):
        """The model the step's forward runs: compiled when ``compile`` is set (and it
        worked), else the model itself."""
        if self.compile is None:
            return self.model
        if self._compiled is None:
            try:
                self._compiled = torch.compile(self.model, **self.compile)
            except Exception as e:  # e.g. no compiler for this platform or Python
                self._compile_failed(e)
                return self.model
        return self._compiled

    def _compile_failed(self, error: Exception) -> None:
        text = (str(error).strip().splitlines() or [''])[0][:300]
        print_log(f'The {self.desc}: torch.compile({self.compile}) failed '
                  f'({type(error).__name__}: {text}); its forward runs eagerly from now on.',
                  logger='current', level=logging.WARNING)
        self.compile, self._compiled = None, None

    def _forward_context(self, x):
        dtype = PRECISIONS[self.precision]
        if dtype is None:
            return contextlib.nullcontext()
        device = x.device.type if torch.is_tensor(x) else 'cpu'
        return torch.autocast(device_type=device, dtype=dtype)

    def record(self, inputs, data_samples, record_fn, grad: bool = False) -> dict:
        """Run on its view of the batch (``record_fn`` is the distiller's forward with the
        recorder on); a frozen teacher has no losses of its own. Without gradients, unless
        ``grad``: its weights stay frozen, but the graph to its input is kept (a data-free
        generator learns through the teacher). With ``precision`` the forward runs under
        autocast to that dtype; with ``channels_last`` its image input is made channels-last."""
        x = self.view(inputs, data_samples)
        if self.channels_last and torch.is_tensor(x) and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        model = self._forward_model()
        with torch.set_grad_enabled(grad), self._forward_context(x):
            try:
                record_fn(self.recorder, model, x, data_samples)
            except Exception as e:
                if model is self.model:
                    raise
                self._compile_failed(e)  # then the same step eagerly: a model error recurs
                record_fn(self.recorder, self.model, x, data_samples)
        return {}

    def get(self, point, learner: bool = False):
        """The value recorded at ``point`` in this step (float32 whatever the teacher's
        ``precision``: the methods compute as they do with a full-precision teacher)."""
        value = self.recorder.get(point)
        return value if self.precision == 'fp32' else _as_float32(value)

    def log_view(self):
        view = self.view
        if not isinstance(view.inputs, str):
            print_log(f'The {self.desc} is fed {view.sources} concatenated on channels '
                      '(the batch un-normalised, data-sample fields raw), normalised with '
                      f'{view.teacher.describe() if view.teacher else "nothing"}.',
                      logger='current', level=logging.INFO)
        elif view.inputs != 'inputs':
            print_log(f'The {self.desc} is fed data_samples[i].{view.inputs}, normalised with '
                      f'{view.teacher.describe() if view.teacher else "nothing"}.',
                      logger='current', level=logging.INFO)
        elif not view.identity:
            print_log(f'The {self.desc} is fed the batch re-normalised from the student\'s '
                      f'{view.student.describe()} to its own {view.teacher.describe()}.',
                      logger='current', level=logging.INFO)


#: ``torch.compile`` arguments a teacher's ``compile=dict(...)`` may give.
COMPILE_KEYS = ('fullgraph', 'dynamic', 'backend', 'mode', 'options', 'disable')


def check_compile(value, where: str) -> Optional[dict]:
    """A teacher's ``compile``: False/None (eager, default), True (``torch.compile``'s
    defaults) or a dict of its arguments (:data:`COMPILE_KEYS`); returns the arguments."""
    if value is None or value is False:
        return None
    if value is True:
        return {}
    if isinstance(value, dict) and not set(value) - set(COMPILE_KEYS):
        return dict(value)
    raise ValueError(f'model.{where}.compile={value!r}: give True (torch.compile with its '
                     'defaults), False, or a dict of torch.compile arguments '
                     f'{list(COMPILE_KEYS)} (e.g. dict(mode="max-autotune")).')


def check_forward_options(teacher: dict, where: str, trainable: bool):
    """A teacher's ``precision`` (one of :data:`PRECISIONS`, default ``'fp32'``),
    ``channels_last`` (bool, default False) and ``compile`` (:func:`check_compile`), checked;
    refused on a trainable teacher, whose forward is part of the training step (the optimiser
    wrapper's AMP, and MMEngine's ``compile`` setting, decide it there)."""
    precision = teacher.get('precision', 'fp32')
    channels_last = teacher.get('channels_last', False)
    compile_options = check_compile(teacher.get('compile'), where)
    if precision not in PRECISIONS:
        raise ValueError(f'model.{where}.precision={precision!r}: valid values are '
                         f'{list(PRECISIONS)} (autocast on the teacher forward only).')
    if not isinstance(channels_last, bool):
        raise TypeError(f'model.{where}.channels_last must be True or False, got '
                        f'{channels_last!r}.')
    if trainable and (precision != 'fp32' or channels_last or compile_options is not None):
        raise ValueError(f'model.{where}: precision, channels_last and compile are options of '
                         "a frozen teacher's forward; a trainable teacher trains with the "
                         'student (use the optimiser wrapper\'s AMP, `optim_wrapper.type='
                         "'AmpOptimWrapper'`, and MMEngine's `compile` setting).")
    return precision, channels_last, compile_options


def _as_float32(value):
    """``value`` (a tensor, or nested tuples/lists/dicts of them) with every floating
    tensor of lower precision cast to float32."""
    if torch.is_tensor(value):
        return value.float() if value.is_floating_point() and value.dtype != torch.float32 \
            and value.dtype != torch.float64 else value
    if isinstance(value, (tuple, list)):
        return type(value)(_as_float32(v) for v in value)
    if isinstance(value, dict):
        return {k: _as_float32(v) for k, v in value.items()}
    return value


def split_teacher_point(spec, teacher_names: Sequence[str], block: str,
                        also: Sequence[str] = ('self',)):
    """``'det:neck'`` -> ('det', 'neck'); ``dict(teacher='det', module=...)`` -> ('det',
    dict(module=...)); an unprefixed point belongs to the only teacher. ``also`` are names a
    point may give besides the teachers (``'self'``: the student itself), never the default."""
    if isinstance(spec, str) and ':' in spec:
        name, point = spec.split(':', 1)
        name = name.strip()
    elif isinstance(spec, dict) and 'teacher' in spec:
        point = {k: v for k, v in spec.items() if k != 'teacher'}
        name = spec['teacher']
    else:
        if not teacher_names:
            raise ValueError(f'Block {block!r}: teacher point {spec!r} names no teacher, and '
                             'this distiller has none: give model.teacher (or teachers), or '
                             f'read the student itself with "self:<point>" (e.g. '
                             f'{"self:" + str(spec)!r}).')
        if len(teacher_names) > 1:
            raise ValueError(f'Block {block!r}: teacher point {spec!r} does not say which '
                             f'teacher it reads; with several teachers write '
                             f'"<teacher>:<point>" (e.g. {teacher_names[0] + ":neck"!r}). '
                             f'Teachers: {list(teacher_names)}.')
        return teacher_names[0], spec
    if name not in teacher_names and name not in also:
        raise KeyError(f'Block {block!r}: unknown teacher {name!r} in point {spec!r}; the '
                       f'teachers are {list(teacher_names)}, and self (the student '
                       'itself).')
    return name, point


def group_teacher_points(spec, teacher_names: Sequence[str], block: str) -> List[tuple]:
    """A block's ``teacher`` spec (a point or a list) -> [(teacher name, point spec)]."""
    specs = spec if isinstance(spec, (list, tuple)) else [spec]
    return [split_teacher_point(s, teacher_names, block) for s in specs]


def split_learner_points(spec, trainable: Sequence[str], block: str):
    """A block's ``student`` spec -> (learner, spec without prefixes): the learner is None
    (the student) or the trainable teacher every point names (``'peer:head.fc'`` or
    ``dict(teacher='peer', module=...)``)."""
    specs = spec if isinstance(spec, (list, tuple)) else [spec]
    learners, points = [], []
    for s in specs:
        if isinstance(s, str) and ':' in s:
            name, point = (part.strip() for part in s.split(':', 1))
        elif isinstance(s, dict) and 'teacher' in s:
            name, point = s['teacher'], {k: v for k, v in s.items() if k != 'teacher'}
        else:
            name, point = None, s
        if name == 'self':
            name = None  # the student, said explicitly
        if name is not None and name not in trainable:
            raise KeyError(f'Block {block!r}: the student point {s!r} names {name!r}, which '
                           'is not a trainable teacher; a block learns in the student (no '
                           'prefix) or in a trainable teacher '
                           f'(teachers.<name>.trainable=True): {list(trainable)}.')
        learners.append(name)
        points.append(point)
    if len(set(learners)) > 1:
        raise ValueError(f'Block {block!r}: its student points name several models '
                         f'{sorted(map(str, set(learners)))}; a block learns in one model.')
    return learners[0], (points if isinstance(spec, (list, tuple)) else points[0])
