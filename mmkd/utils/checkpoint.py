"""Checkpoint helpers: safe loading of MMEngine checkpoints, student extraction.

Since torch 2.6 ``torch.load`` defaults to ``weights_only=True``, which refuses any pickled
global not on an allow-list. MMEngine 0.10 checkpoints pickle a few harmless types of their own
(the message hub's ``HistoryBuffer`` with numpy arrays and scalars, and its statistics methods,
pickled as ``getattr(HistoryBuffer, 'mean')``), so resuming fails. Rather
than turning safe loading off, :func:`register_safe_globals` adds exactly those types to torch's
allow-list; anything else is still refused, and MMEngine's local-file loader is replaced by one
that reports such a refusal as :class:`UnsafeCheckpointError` naming the file and the global.
"""
import os.path as osp
import pickle
import re
from typing import Dict

import numpy as np
import torch

_REGISTERED = False


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint pickles a global that is not on the safe-loading allow-list."""


def _numpy_safe_globals():
    try:  # numpy >= 2
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct, scalar
    dtype_classes = [type(np.dtype(t)) for t in
                     (np.float16, np.float32, np.float64, np.int8, np.int16, np.int32,
                      np.int64, np.uint8, np.bool_)]
    return [_reconstruct, scalar, np.ndarray, np.dtype, *dtype_classes]


def register_safe_globals() -> None:
    """Allow-list the types MMEngine 0.10 pickles into its checkpoints (idempotent)."""
    global _REGISTERED
    if _REGISTERED or not hasattr(torch.serialization, 'add_safe_globals'):
        return
    from mmengine.logging import HistoryBuffer
    torch.serialization.add_safe_globals([
        HistoryBuffer, *_numpy_safe_globals(),
        # Not the builtin: a getattr that only resolves HistoryBuffer's statistics methods.
        (_history_buffer_getattr, '__builtin__.getattr'),
        (_history_buffer_getattr, 'builtins.getattr')])
    _patch_mmengine_local_loader()
    _REGISTERED = True


def _history_buffer_getattr(obj, name):
    from mmengine.logging import HistoryBuffer
    # The built-in statistics are only added to _statistics_methods by the first instance.
    allowed = {'min', 'max', 'current', 'mean', *HistoryBuffer._statistics_methods}
    if obj is HistoryBuffer and name in allowed:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'GLOBAL getattr({getattr(obj, "__name__", type(obj).__name__)}, {name!r}) is not '
        'allowed: only HistoryBuffer statistics methods may be looked up while unpickling.')


def _patch_mmengine_local_loader():
    from mmengine.runner.checkpoint import CheckpointLoader

    @CheckpointLoader.register_scheme(prefixes='', force=True)
    def load_from_local(filename, map_location):
        filename = osp.expanduser(filename)
        if not osp.isfile(filename):
            raise FileNotFoundError(f'{filename} can not be found.')
        return safe_torch_load(filename, map_location=map_location)


def safe_torch_load(filename, map_location='cpu'):
    """``torch.load`` with weights-only unpickling and a readable refusal."""
    try:
        return torch.load(filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r'GLOBAL ([\w.]+)', str(e))
        name = found.group(1) if found else 'an object type'
        raise UnsafeCheckpointError(
            f'Refusing to load {filename}: it pickles {name}, which is not on the safe-loading '
            'allow-list (MMEngine checkpoint types are allowed by mmkd). If you trust this '
            f'file, allow the type with torch.serialization.add_safe_globals([{name}]).'
        ) from e


def extract_student_state_dict(state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Keys ``student.X`` of a distiller state dict, renamed ``X`` for the plain model."""
    prefix = 'student.'
    out = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    if not out:
        raise KeyError('No "student.*" keys in this checkpoint: is it a distiller checkpoint?')
    return out
