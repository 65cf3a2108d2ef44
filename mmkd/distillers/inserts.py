"""Modules inserted into a model after one of its modules, kept at training, test and export.

Most distillation methods only *read* the student; a few change it. letKD's KD layer
(:mod:`mmkd.methods.letkd`) sits after a stage of the student and its output replaces the
stage's output for the rest of the network, at inference too. An insert is declared by name::

    inserts = dict(
        penult=dict(after='backbone.layer3',      # a module of the model (named_modules())
                    module=dict(type='mmkd.KDLayer', num_templates=64)))

An insert class that takes the channel count of the output it follows names that argument in
``channels_argument`` (KDLayer: ``in_channels``). Configs need not state it: the distiller
fills it in from one forward of the student on its dry-run batch
(:func:`infer_insert_channels`), and keeps the filled-in dict (``Distiller.student_inserts``),
which is what checkpoints record and what the exported student's config states.

:func:`attach_inserts` registers every insert under ``model.kd_inserts.<name>`` (so its weights
are saved, loaded, optimised and synchronised by DDP as the model's own: keys
``kd_inserts.<name>.*`` beside the model's unchanged keys, so a checkpoint of the plain model
still loads into the original modules) and hooks it on the ``after`` module: the module's
output ``y`` becomes ``insert(y)`` for whatever consumes it. The same dict works in two places:

- ``mmkd.Distiller(student_inserts=...)``: the distilled student carries the inserts; blocks
  record them like any student module (``student='kd_inserts.penult.scores'``), and the
  module's own point records the output *after* the insert (use the insert's input,
  ``dict(module='kd_inserts.penult', source='input')``, for the raw one);
- ``model=dict(type='mmkd.StudentWithInserts', model=<any model>, inserts=...)``: a plain
  model with inserts (the config ``tools/model_converters/extract_student.py`` writes for such
  a student, and the no-teacher ablation of a method that inserts layers). It builds the model
  itself (under its own package's scope), with the inserts attached: no wrapper, no prefix.

**Training-only branches.** ``mode='branch'`` (the default is ``'replace'``) makes an insert a
side branch: it receives the output of its ``after`` module and its own output goes nowhere
but to the record points (``student='kd_inserts.exit1'``, or a submodule of it); the network
continues with the unchanged output. BYOT's auxiliary exits (:class:`mmkd.AuxExit`) are
branches::

    student_inserts = dict(
        exit1=dict(after='backbone.layer1', mode='branch',
                   module=dict(type='mmkd.AuxExit', num_classes=100, match='backbone.layer4')))

A branch is trained with the student (its parameters are ``student.kd_inserts.<name>.*``; the
gradients of the losses on its output also reach the modules it follows) and runs only in the
model's ``loss`` and ``tensor`` modes (training, the distiller's dry run): in ``predict`` mode
(``tools/test.py``, validation) it is skipped, so predictions and their cost are the plain
model's. It is **dropped at export**: ``tools/model_converters/extract_student.py`` writes
neither its weights nor its entry, so a student whose inserts are all branches exports as the
plain student, which its own base config loads strictly (:func:`branch_names`,
:func:`without_branches`).

An insert class whose arguments depend on shapes in the model may, besides
``channels_argument``, define ``shape_probes(cfg) -> [module names]`` (other modules whose
outputs it needs) and ``infer_shape_arguments(cfg, output, probes) -> dict`` (the arguments to
fill from the output it follows and those probes' outputs); :func:`infer_insert_channels` calls
them in the same probe forward.
"""
import copy
import inspect
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn as nn
from mmengine.registry import DefaultScope

from mmkd.recorders.module_recorder import RecordPointError, find_module
from mmkd.registry import MODELS
from mmkd.utils.errors import with_message

from .model_builder import build_model_in_scope, infer_model_scope

INSERTS_ATTR = 'kd_inserts'
INSERT_KEYS = ('after', 'module')
#: Optional key of an insert: 'replace' (default) or 'branch' (module docstring).
INSERT_MODES = ('replace', 'branch')
#: Modes of the model's forward in which branches run (they are skipped in 'predict').
BRANCH_RUN_MODES = ('loss', 'tensor')


class _ReplaceOutput:
    """Forward hook: the hooked module's output goes through the insert ``inserts[name]``
    (looked up at each call, so a module swapped in later, e.g. by SyncBN conversion, is the
    one used; a plain object, not a closure, so a model with inserts deep-copies and pickles).

    An ordinary error raised by the insert (a channel count that does not fit, a wrong rank)
    is raised again, of the same type, prefixed with the insert's name and the module it
    follows: the error is in the insert's settings, not in the model around it.
    """

    def __init__(self, inserts: nn.ModuleDict, name: str, after: str, setting: str):
        self.inserts = inserts
        self.name = name
        self.after = after
        self.setting = setting  # where the insert is configured, e.g. model.student_inserts.x

    def __call__(self, module, args, output):
        insert = self.inserts[self.name]
        try:
            return insert(output)
        except RecordPointError:  # a record point inside the insert: the recorder reports it
            raise
        except (ValueError, TypeError, RuntimeError, IndexError) as e:
            prefix = (f'Insert {self.name!r} ({type(insert).__name__} after {self.after!r}, '
                      f'configured in {self.setting})')
            text = str(e)
            if text.startswith(prefix):
                raise
            raise with_message(e, f'{prefix}: {text}')


class _BranchSwitch:
    """Whether the branches of one model run in its current forward (set by the model's own
    forward pre-hook, :class:`_SetBranchMode`, from the ``mode`` the forward is called with)."""

    def __init__(self):
        self.active = True


class _SetBranchMode:
    """Forward pre-hook of the model that carries branches: branches run in its ``loss`` and
    ``tensor`` modes and are skipped in ``predict``. A model whose forward takes no ``mode``
    always runs them. Set at every call (a forward ended by an exception leaves nothing
    stale)."""

    def __init__(self, switch: _BranchSwitch, position: Optional[int], default):
        self.switch = switch
        self.position = position  # of `mode` among the positional arguments, None: no `mode`
        self.default = default

    def __call__(self, module, args, kwargs):
        if self.position is None:
            self.switch.active = True
            return None
        if 'mode' in kwargs:
            mode = kwargs['mode']
        elif len(args) > self.position:
            mode = args[self.position]
        else:
            mode = self.default
        self.switch.active = mode in BRANCH_RUN_MODES
        return None


class _RunBranch(_ReplaceOutput):
    """Forward hook of a branch: the hooked module's output goes through the insert, whose
    output is dropped (record points on the insert capture it); the module's output is left
    as it is. Skipped while the model predicts."""

    def __init__(self, inserts: nn.ModuleDict, name: str, after: str, setting: str,
                 switch: _BranchSwitch):
        super().__init__(inserts, name, after, setting)
        self.switch = switch

    def __call__(self, module, args, output):
        if self.switch.active:
            super().__call__(module, args, output)
        return None


def _mode_position(model: nn.Module):
    """(position of ``mode`` among the positional arguments of ``model.forward``, its
    default), or (None, None) when the forward takes no ``mode``."""
    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        return None, None
    for i, p in enumerate(params):
        if p.name == 'mode':
            default = p.default if p.default is not inspect.Parameter.empty else 'tensor'
            positional = p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
            # keyword-only: never among the positional arguments
            return (i if positional else len(params)), default
    return None, None


def insert_mode(spec) -> str:
    """The mode of one insert's spec: ``'replace'`` (default) or ``'branch'``."""
    return spec.get('mode', 'replace') if isinstance(spec, dict) else 'replace'


def branch_names(inserts: Optional[Dict[str, dict]]) -> List[str]:
    """The names of the training-only branches (``mode='branch'``) among ``inserts``."""
    if not isinstance(inserts, dict):
        return []
    return [name for name, spec in inserts.items() if insert_mode(spec) == 'branch']


def without_branches(inserts: Optional[Dict[str, dict]]) -> Optional[Dict[str, dict]]:
    """``inserts`` less its branches (what the exported student keeps); None when nothing is
    left, so a student whose inserts were all branches is the plain model."""
    if not isinstance(inserts, dict):
        return inserts
    kept = {name: spec for name, spec in inserts.items() if insert_mode(spec) != 'branch'}
    return kept or None


def attach_inserts(model: nn.Module, inserts: Optional[Dict[str, dict]],
                   desc: str = 'model', setting: str = 'model.inserts') -> nn.Module:
    """Build and attach ``inserts`` (module docstring) to ``model`` in place; returns it.
    ``desc`` names the model and ``setting`` the config key of ``inserts`` in messages."""
    if not inserts:
        return model
    if not isinstance(inserts, dict):
        raise TypeError(f'inserts of the {desc} must be a dict: name -> dict(after=<module '
                        f'name>, module=dict(type=...)), got {inserts!r}.')
    if hasattr(model, INSERTS_ATTR):
        raise ValueError(f'The {desc} already has inserts ({INSERTS_ATTR}): give them once.')
    built = nn.ModuleDict()
    targets = {}
    for name, spec in inserts.items():
        where = f'inserts.{name}'
        if not isinstance(spec, dict) or not (
                set(INSERT_KEYS) <= set(spec) <= set(INSERT_KEYS) | {'mode'}):
            raise KeyError(f'{where}: give exactly the keys {list(INSERT_KEYS)} (after=<module '
                           f'name of the {desc}>, module=dict(type=...)), and optionally '
                           f"mode ('replace' or 'branch'), got {spec!r}.")
        mode = spec.get('mode', 'replace')
        if mode not in INSERT_MODES:
            raise ValueError(f'{where}: mode={mode!r}: valid values are {list(INSERT_MODES)} '
                             "('replace': its output replaces the module's; 'branch': a "
                             'training-only side branch, dropped at export).')
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f'{where}: the name must be a Python identifier.')
        after = spec['after']
        try:
            target = find_module(model, after, desc)
        except KeyError as e:
            raise KeyError(f'{where}: after={after!r}: {e.args[0]}') from None
        if mode == 'replace' and any(after == other and other_mode == 'replace'
                                     for other, _, other_mode in targets.values()):
            raise ValueError(f'{where}: another insert already follows {after!r}; chain them '
                             'in one module (e.g. a Sequential) instead.')
        cfg = spec['module']
        if isinstance(cfg, str):
            cfg = dict(type=cfg)
        try:
            # mmkd's scope: unscoped types are mmkd's, 'mmpretrain.X' etc. still resolve.
            with DefaultScope.overwrite_default_scope('mmkd'):
                built[name] = MODELS.build(copy.deepcopy(cfg))
        except Exception as e:  # name the insert whose module failed
            raise type(e)(f'{where}: building {cfg!r} failed: {e}') from e
        targets[name] = (after, target, mode)
    model.add_module(INSERTS_ATTR, built)
    switch = None
    # Branches first: on a module that also has a replacing insert, a branch sees the
    # module's own output (hooks run in registration order).
    for name, (after, target, mode) in sorted(targets.items(), key=lambda t: t[1][2] != 'branch'):
        if mode == 'branch':
            if switch is None:
                switch = _BranchSwitch()
                position, default = _mode_position(model)
                model.register_forward_pre_hook(_SetBranchMode(switch, position, default),
                                                with_kwargs=True)
            target.register_forward_hook(
                _RunBranch(built, name, after, f'{setting}.{name}', switch))
        else:
            target.register_forward_hook(
                _ReplaceOutput(built, name, after, f'{setting}.{name}'))
    return model


def _insert_class(cfg):
    kind = cfg if isinstance(cfg, str) else cfg.get('type') if isinstance(cfg, dict) else None
    if isinstance(kind, type):
        return kind
    with DefaultScope.overwrite_default_scope('mmkd'):
        return MODELS.get(kind) if isinstance(kind, str) else None


class _Captured(Exception):
    """Ends the probe forward once every output it waits for is captured."""


def infer_insert_channels(model: nn.Module, inserts: Optional[Dict[str, dict]],
                          input_shape: Sequence[int], desc: str = 'model') -> Optional[dict]:
    """``inserts`` with each module's ``channels_argument`` (e.g. KDLayer's ``in_channels``)
    filled in where the config leaves it out: the channels (dim 1) of the output of the module
    it follows, from one forward of ``model`` on a random batch of ``input_shape`` (eval mode,
    no grad, stopped once every such output is seen). An insert class with
    ``infer_shape_arguments`` (module docstring; :class:`mmkd.AuxExit`) gets that output and
    the outputs of its ``shape_probes`` in the same forward and fills what it returns. The
    random draw is undone, so building with or without the inference gives the same weights.
    A copy; ``inserts`` is not changed.
    """
    if not isinstance(inserts, dict):
        return inserts
    wanted = {}  # name -> (after, channels argument or None, probes or None)
    for name, spec in inserts.items():
        cfg = spec.get('module') if isinstance(spec, dict) else None
        cls = _insert_class(cfg)
        if 'after' not in (spec if isinstance(spec, dict) else {}) or not isinstance(
                cfg, (dict, str)):
            continue
        argument = getattr(cls, 'channels_argument', None)
        if argument and (isinstance(cfg, str) or cfg.get(argument) is None):
            wanted[name] = (spec['after'], argument, None)
        elif callable(getattr(cls, 'infer_shape_arguments', None)):
            probes = cls.shape_probes(dict(type=cfg) if isinstance(cfg, str) else cfg) \
                if callable(getattr(cls, 'shape_probes', None)) else []
            wanted[name] = (spec['after'], None, list(probes))
    if not wanted:
        return inserts
    modules = list(dict.fromkeys(
        [a for a, _, _ in wanted.values()] +
        [p for _, _, probes in wanted.values() for p in probes or []]))
    captured, handles = {}, []

    def capture(after):
        def hook(module, args, output):
            if after not in captured:
                captured[after] = output
            if all(a in captured for a in modules):
                raise _Captured
        return hook

    for after in modules:
        try:
            target = find_module(model, after, desc)
        except KeyError as e:
            users = [n for n, (a, _, probes) in wanted.items() if after == a or
                     after in (probes or [])]
            raise KeyError(f'inserts.{users[0]}: {after!r}: {e.args[0]}') from None
        handles.append(target.register_forward_hook(capture(after)))
    training = model.training
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            model.eval()
            try:
                model(torch.randn(*input_shape), None, mode='tensor')
            except _Captured:
                pass
            except Exception:
                if not all(a in captured for a in modules):
                    raise
    finally:
        model.train(training)
        for handle in handles:
            handle.remove()
    out = copy.deepcopy(inserts)
    for name, (after, argument, probes) in wanted.items():
        value = captured.get(after)
        cfg = out[name]['module']
        cfg = dict(type=cfg) if isinstance(cfg, str) else dict(cfg)
        if argument is not None:
            if not isinstance(value, torch.Tensor) or value.dim() < 2:
                raise TypeError(
                    f'Insert {name!r}: {argument} is inferred from the output of {after!r} '
                    f'(its channels, dim 1), which is {type(value).__name__} here; insert it '
                    f'after a module whose output is one (N, C, ...) tensor, or state '
                    f'{argument}.')
            cfg[argument] = int(value.shape[1])
        else:
            cls = _insert_class(cfg)
            try:
                cfg.update(cls.infer_shape_arguments(cfg, value,
                                                     {p: captured.get(p) for p in probes}))
            except (TypeError, ValueError) as e:
                raise with_message(e, f'Insert {name!r} ({cls.__name__} after {after!r}): '
                                   f'{e}') from e
        out[name]['module'] = cfg
    return out


@MODELS.register_module(name='StudentWithInserts')
def build_student_with_inserts(model: dict, inserts: Dict[str, dict], scope: Optional[str] = None,
                               data_preprocessor: Optional[dict] = None) -> nn.Module:
    """Build ``model`` under its package's scope (``scope`` or inferred) and attach ``inserts``.

    Returns the model itself (its class, its keys), so every tool treats it as the plain model.
    ``data_preprocessor`` is the config's top-level one (mmpretrain keeps it there; the Runner
    hands it to the outermost model): it belongs to ``model`` unless that sets its own.
    """
    cfg = copy.deepcopy(dict(model))
    if data_preprocessor is not None and cfg.get('data_preprocessor') is None:
        cfg['data_preprocessor'] = data_preprocessor
    built = build_model_in_scope(cfg, infer_model_scope(cfg, scope))
    return attach_inserts(built, inserts)
