"""Build student/teacher models under their own OpenMMLab package's registry scope.

With mmpretrain, mmdet and mmseg all registered, an unscoped ``type='RetinaNet'`` only resolves
under the ``mmdet`` default scope. Configs given to the distiller lose that information
(``{{_base_.model}}`` is a plain dict), so we recover it: an explicit ``scope.Type`` wins, then
the scope of the config file the model came from, then the current default scope, then the first
of the known OpenMMLab packages whose registry holds the type.
"""
import copy
import importlib
import os.path as osp
import re
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.config import Config, ConfigDict
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import DefaultScope
from mmengine.runner.checkpoint import _load_checkpoint

from ..utils.errors import with_message

KNOWN_SCOPES = ('mmpretrain', 'mmdet', 'mmseg')


def _scope_registry(scope: str):
    try:
        return importlib.import_module(f'{scope}.registry').MODELS
    except ImportError:
        return None


def infer_model_scope(model_cfg: dict, hint: Optional[str] = None) -> str:
    """Return the registry scope (e.g. 'mmdet') that defines ``model_cfg['type']``."""
    model_type = model_cfg.get('type')
    if not isinstance(model_type, str):
        return hint or DefaultScope.get_current_instance().scope_name
    if '.' in model_type:
        return model_type.split('.', 1)[0]
    current = DefaultScope.get_current_instance()
    candidates = [hint, current.scope_name if current else None, *KNOWN_SCOPES]
    tried = []
    for scope in dict.fromkeys(c for c in candidates if c and c != 'mmkd'):
        registry = _scope_registry(scope)
        if registry is None:
            continue
        tried.append(scope)
        registry.import_from_location()
        if model_type in registry.module_dict:
            return scope
    raise KeyError(f'Model type {model_type!r} is not registered in any of the scopes '
                   f'{tried}. Give it a scope prefix (e.g. "mmdet.{model_type}") or import '
                   'the package that defines it (custom_imports).')


def build_model_in_scope(model_cfg: dict, scope: Optional[str] = None) -> nn.Module:
    """Build ``model_cfg`` with the MODELS registry of ``scope`` (inferred when None)."""
    scope = infer_model_scope(model_cfg, scope)
    with DefaultScope.overwrite_default_scope(scope):
        return MMENGINE_MODELS.build(model_cfg)


def without_pretrained(model_cfg: dict) -> ConfigDict:
    """A copy of ``model_cfg`` that downloads nothing when built: no ``pretrained`` and no
    backbone ``init_cfg`` (for models whose weights all come from a checkpoint)."""
    cfg = ConfigDict(copy.deepcopy(dict(model_cfg)))
    cfg.pop('pretrained', None)
    if isinstance(cfg.get('backbone'), dict):
        cfg.backbone.pop('init_cfg', None)
    return cfg


def load_model_config(config: Union[str, dict, Config]) -> Tuple[ConfigDict, Optional[str]]:
    """Return ``(model_cfg, scope)`` from a config path or an already-loaded config.

    ``config`` may be a local file, a package config such as
    ``'mmdet::retinanet/retinanet_r101_fpn_2x_coco.py'``, a :class:`Config`, or a model dict.
    """
    if isinstance(config, str):
        config = Config.fromfile(resolve_config_path(config))
        if 'model' not in config:
            raise KeyError(f'Config {config.filename!r} has no `model` field.')
    if isinstance(config, Config):
        model = config.model
        # As the Runner does: a top-level `data_preprocessor` (mmpretrain keeps it there)
        # belongs to the model when the model does not set its own.
        if config.get('data_preprocessor') is not None and isinstance(model, dict) and \
                model.get('data_preprocessor') is None:
            model = copy.deepcopy(model)
            model['data_preprocessor'] = copy.deepcopy(config.data_preprocessor)
        return model, config.get('default_scope', None)
    if isinstance(config, dict):
        return ConfigDict(config), None
    raise TypeError(f'A model config is a path, Config or dict, got {type(config).__name__}.')


def resolve_config_path(config: str) -> str:
    """A local config path, or ``package::rel`` located in the configs that OpenMMLab packages
    ship in their ``.mim`` folder (``'mmdet::retinanet/retinanet_r50_fpn_2x_coco.py'``)."""
    if '::' not in config:
        path = osp.expanduser(config)
        if not osp.isfile(path):
            raise FileNotFoundError(f'Config file {config!r} does not exist.')
        return path
    package, rel = config.split('::', 1)
    package = {'mmseg': 'mmseg', 'mmsegmentation': 'mmseg', 'mmcls': 'mmpretrain'}.get(
        package, package)
    try:
        module = importlib.import_module(package)
    except ImportError as e:
        raise ImportError(f'Config "{package}::{rel}" needs the package {package!r}.') from e
    root = osp.join(osp.dirname(module.__file__), '.mim', 'configs')
    path = osp.join(root, rel)
    if not osp.isfile(path):
        raise FileNotFoundError(f'{package} ships no config {rel!r} (looked in {root}).')
    return path


def load_checkpoint_strict(model: nn.Module, checkpoint: str, desc: str = 'teacher',
                          revise_keys: Sequence[Sequence[str]] = ()) -> dict:
    """Load ``checkpoint`` (path or URL) into ``model``; every key must match exactly.

    The weights are the checkpoint's ``state_dict`` (OpenMMLab), else its ``model`` (DeiT,
    timm training scripts), else the checkpoint itself; a ``module.`` prefix is dropped.
    ``revise_keys`` is a list of ``(regex, replacement)`` applied in order to every key (as in
    ``mmengine.runner.load_checkpoint``), for checkpoints from another codebase.

    Every error names the model (``desc``) and the checkpoint: the loader's own (a missing,
    empty, truncated, corrupted or oversized file, a directory or device, a URL that does not
    answer, unsafe content: :mod:`mmkd.utils.checkpoint_file`), a TypeError for a file that
    holds something else than a state dict (a list, a bare tensor), a RuntimeError that names
    the missing, unexpected and mis-shaped keys for any mismatch, and a FloatingPointError
    naming the tensors that hold NaN/inf (all before touching the model).
    """
    if not isinstance(checkpoint, str) or not checkpoint:
        raise TypeError(f'The {desc} needs a checkpoint: a path or URL of trained weights, got '
                        f'{checkpoint!r}.')
    try:
        ckpt = _load_checkpoint(checkpoint, map_location='cpu')
    except Exception as e:
        raise with_message(e, f'The {desc} checkpoint: {e}') from e
    state = ckpt
    if isinstance(ckpt, dict):
        state = ckpt['state_dict'] if 'state_dict' in ckpt else ckpt.get('model', ckpt)
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        what = (f'a {type(state).__name__}' + (f' of shape {tuple(state.shape)}'
                                                if isinstance(state, torch.Tensor) else
                                                f' of {len(state)} items'
                                                if isinstance(state, (list, tuple)) else ''))
        raise TypeError(
            f'The {desc} checkpoint {checkpoint!r} holds {what}, not a state dict (names -> '
            'tensors, alone or under "state_dict" or "model"). Save the trained model with '
            "torch.save({'state_dict': model.state_dict()}, path).")
    state = {k[len('module.'):] if k.startswith('module.') else k: v for k, v in state.items()}
    for pattern, replacement in revise_keys:
        state = {re.sub(pattern, replacement, k): v for k, v in state.items()}
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mis_shaped = sorted(k for k in set(own) & set(state)
                        if hasattr(state[k], 'shape') and state[k].shape != own[k].shape)
    if missing or unexpected or mis_shaped:
        def show(keys):
            return f'{len(keys)} {keys[:8]}{" ..." if len(keys) > 8 else ""}'
        raise RuntimeError(
            f'The {desc} checkpoint {checkpoint!r} does not match the {desc} model '
            f'({type(model).__name__}): missing keys: {show(missing)}; unexpected keys: '
            f'{show(unexpected)}; shape mismatch: '
            + show([f'{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}'
                    for k in mis_shaped]))
    nonfinite = sorted(k for k, v in state.items() if isinstance(v, torch.Tensor)
                       and v.is_floating_point() and not torch.isfinite(v).all())
    if nonfinite:
        raise FloatingPointError(
            f'The {desc} checkpoint {checkpoint!r} holds NaN/inf values in {len(nonfinite)} '
            f'tensor(s): {nonfinite[:8]}{" ..." if len(nonfinite) > 8 else ""}. It would give '
            'non-finite targets from the first iteration.')
    model.load_state_dict(state, strict=True)
    return ckpt
