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
"""
import copy
from typing import Dict, Optional, Sequence

import torch
import torch.nn as nn
from mmengine.registry import DefaultScope

from mmkd.recorders.module_recorder import RecordPointError, find_module
from mmkd.registry import MODELS
from mmkd.utils.errors import with_message

from .model_builder import build_model_in_scope, infer_model_scope

INSERTS_ATTR = 'kd_inserts'
INSERT_KEYS = ('after', 'module')


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
        if not isinstance(spec, dict) or set(spec) != set(INSERT_KEYS):
            raise KeyError(f'{where}: give exactly the keys {list(INSERT_KEYS)} (after=<module '
                           f'name of the {desc}>, module=dict(type=...)), got {spec!r}.')
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f'{where}: the name must be a Python identifier.')
        after = spec['after']
        try:
            target = find_module(model, after, desc)
        except KeyError as e:
            raise KeyError(f'{where}: after={after!r}: {e.args[0]}') from None
        if any(after == other for other, _ in targets.values()):
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
        targets[name] = (after, target)
    model.add_module(INSERTS_ATTR, built)
    for name, (after, target) in targets.items():
        target.register_forward_hook(_ReplaceOutput(built, name, after, f'{setting}.{name}'))
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
    no grad, stopped once every such output is seen). The random draw is undone, so building
    with or without the inference gives the same weights. A copy; ``inserts`` is not changed.
    """
    if not isinstance(inserts, dict):
        return inserts
    wanted = {}
    for name, spec in inserts.items():
        cfg = spec.get('module') if isinstance(spec, dict) else None
        cls = _insert_class(cfg)
        argument = getattr(cls, 'channels_argument', None)
        if argument and isinstance(cfg, (dict, str)) and (
                isinstance(cfg, str) or cfg.get(argument) is None) and 'after' in spec:
            wanted[name] = (spec['after'], argument)
    if not wanted:
        return inserts
    captured, handles = {}, []

    def capture(after):
        def hook(module, args, output):
            if after not in captured:
                captured[after] = output
            if all(a in captured for a, _ in wanted.values()):
                raise _Captured
        return hook

    for after, _ in dict.fromkeys(wanted.values()):
        target = find_module(model, after, desc)
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
                if not all(a in captured for a, _ in wanted.values()):
                    raise
    finally:
        model.train(training)
        for handle in handles:
            handle.remove()
    out = copy.deepcopy(inserts)
    for name, (after, argument) in wanted.items():
        value = captured.get(after)
        if not isinstance(value, torch.Tensor) or value.dim() < 2:
            raise TypeError(
                f'Insert {name!r}: {argument} is inferred from the output of {after!r} (its '
                f'channels, dim 1), which is {type(value).__name__} here; insert it after a '
                f'module whose output is one (N, C, ...) tensor, or state {argument}.')
        cfg = out[name]['module']
        cfg = dict(type=cfg) if isinstance(cfg, str) else dict(cfg)
        cfg[argument] = int(value.shape[1])
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
