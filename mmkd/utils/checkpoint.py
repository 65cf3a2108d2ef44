"""Checkpoint helpers: safe loading of every checkpoint MMEngine loads, student extraction.

Since torch 2.6 ``torch.load`` defaults to ``weights_only=True``, which refuses any pickled
global not on an allow-list. MMEngine 0.10 checkpoints pickle a few harmless types of their own
(the message hub's ``HistoryBuffer`` with numpy arrays and scalars, and its statistics methods,
pickled as ``getattr(HistoryBuffer, 'mean')``), so resuming fails. Rather than turning safe
loading off, :func:`register_safe_globals` adds exactly those types to torch's allow-list.

Not every MMEngine loader asks for safe loading, though: the ``http(s)://`` loader, and the
``open-mmlab://``, ``torchvision://``, ``mmcls://`` ... loaders built on it, call
``torch.hub.load_state_dict_from_url``, whose ``weights_only`` defaults to False, and the
``pavi://`` and ``s3://`` loaders call ``torch.load`` without it. A teacher checkpoint,
``load_from`` or ``--resume`` given as a URL could then run code while unpickling. Rewriting
each loader would miss the next one registered, so :func:`register_safe_globals` instead wraps
``CheckpointLoader.load_checkpoint``, the one dispatch point every MMEngine path goes through
(``_load_checkpoint``, ``load_checkpoint``, ``Runner.load_checkpoint`` and ``resume``,
pretrained ``init_cfg``): whatever loader a scheme maps to, every ``torch.load`` it makes is
weights-only (:func:`force_weights_only`), and a refusal is raised as
:class:`UnsafeCheckpointError` naming the checkpoint as the user gave it and the refused global.
"""
import contextlib
import functools
import inspect
import os
import os.path as osp
import pickle
import pickletools
import re
import sys
import threading
from typing import Dict, Optional, Tuple

import numpy as np
import torch

from .checkpoint_file import (CheckpointFileError, DamagedCheckpointError,
                              check_checkpoint_file, download_checkpoint, url_cache_path)
from .errors import with_message

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
    """Allow-list MMEngine 0.10's checkpoint types; make all its loaders safe (idempotent)."""
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
    _patch_mmengine_http_loader()
    _guard_checkpoint_loader()
    _REGISTERED = True


def _history_buffer_getattr(obj, name):
    from mmengine.logging import HistoryBuffer
    # The built-in statistics are only added to _statistics_methods by the first instance.
    allowed = {'min', 'max', 'current', 'mean', *HistoryBuffer._statistics_methods}
    if obj is HistoryBuffer and name in allowed:
        return getattr(HistoryBuffer, name)
    # The wording is matched by _describe_refusal.
    raise pickle.UnpicklingError(
        f'getattr({getattr(obj, "__name__", type(obj).__name__)}, {name!r}) is not allowed: '
        'only HistoryBuffer statistics methods may be looked up while unpickling.')


def _patch_mmengine_local_loader():
    from mmengine.runner.checkpoint import CheckpointLoader

    @CheckpointLoader.register_scheme(prefixes='', force=True)
    def load_from_local(filename, map_location):
        # The file checks (a regular file, complete, plausible sizes, CRC) name `filename`.
        return safe_torch_load(osp.expanduser(filename), map_location=map_location,
                               source=filename)


def _patch_mmengine_http_loader():
    """``http(s)://`` checkpoints (and ``open-mmlab://``, ``torchvision://``, ``mmcls://``...,
    which MMEngine maps to URLs and loads through the module's ``load_from_http``) are
    downloaded with bounded timeouts and size (:func:`download_checkpoint`) into torch.hub's
    cache, then loaded like a local file, checks included. As MMEngine's loader: rank 0
    downloads first, the other ranks wait for it, then read the cached copy."""
    from mmengine.dist import get_dist_info
    from mmengine.runner import checkpoint as mmengine_checkpoint
    from mmengine.runner.checkpoint import CheckpointLoader

    def load_from_http(filename, map_location=None, model_dir=None, progress=None):
        path = url_cache_path(filename, model_dir)
        rank, world_size = get_dist_info()
        if rank == 0 and not osp.isfile(path):
            download_checkpoint(filename, path)
        if world_size > 1:
            torch.distributed.barrier()
            if not osp.isfile(path):  # another node: its own cache
                download_checkpoint(filename, path)
        return safe_torch_load(path, map_location=map_location,
                               source=f'{filename} (downloaded to {path})')

    mmengine_checkpoint.load_from_http = load_from_http
    CheckpointLoader.register_scheme(prefixes=('http://', 'https://'), loader=load_from_http,
                                     force=True)


_FORCE_ON = 'TORCH_FORCE_WEIGHTS_ONLY_LOAD'
_FORCE_OFF = 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD'
_force_lock = threading.Lock()
_force_depth = 0
_saved_env: Dict[str, Optional[str]] = {}


@contextlib.contextmanager
def force_weights_only():
    """Make every ``torch.load`` in this process weights-only while the block runs.

    torch reads ``TORCH_FORCE_WEIGHTS_ONLY_LOAD`` at each call and lets it override even an
    explicit ``weights_only=False``, which is what makes loaders we do not own safe. torch
    refuses to load at all when ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` is set too, so that one is
    lifted meanwhile: it never applied to checkpoints anyway, since it only changes calls that
    pass no ``weights_only`` and mmkd's loader has always passed True. Both are restored when the
    outermost of nested or concurrent blocks ends (a depth count under a lock), so one thread
    finishing cannot switch safe loading off under another still loading.
    """
    global _force_depth
    with _force_lock:
        if _force_depth == 0:
            _saved_env.update({k: os.environ.pop(k, None) for k in (_FORCE_ON, _FORCE_OFF)})
            os.environ[_FORCE_ON] = '1'
        _force_depth += 1
    try:
        yield
    finally:
        with _force_lock:
            _force_depth -= 1
            if _force_depth == 0:
                for key, value in _saved_env.items():
                    os.environ.pop(key, None)
                    if value is not None:
                        os.environ[key] = value
                _saved_env.clear()


def _guard_checkpoint_loader():
    """Route MMEngine's scheme dispatch, and so every scheme's loader, through safe loading."""
    from mmengine.runner.checkpoint import CheckpointLoader
    unguarded = CheckpointLoader.load_checkpoint.__func__
    if getattr(unguarded, '_mmkd_guarded', False):
        return

    @functools.wraps(unguarded)
    def load_checkpoint(cls, filename, *args, **kwargs):
        with force_weights_only():
            try:
                return unguarded(cls, filename, *args, **kwargs)
            except (UnsafeCheckpointError, CheckpointFileError) as e:
                if str(filename) in str(e):
                    raise  # the local loader's, already naming the file
                # e.g. torchvision://name, loaded from the URL it maps to
                raise with_message(e, f'{filename}: {e}') from None
            except pickle.UnpicklingError as e:
                # filename as given (URL, open-mmlab://...), not the download cache's copy.
                raise UnsafeCheckpointError(_refusal_message(filename, e)) from None

    load_checkpoint._mmkd_guarded = True
    CheckpointLoader.load_checkpoint = classmethod(load_checkpoint)


def safe_torch_load(filename, map_location='cpu', source: Optional[str] = None):
    """``torch.load`` of a local file, weights-only, after the file checks of
    :mod:`mmkd.utils.checkpoint_file` (a regular file, a complete archive of plausible sizes,
    every record's CRC); errors name ``source`` (the checkpoint as the user gave it, default
    ``filename``)."""
    source = source or filename
    check_checkpoint_file(filename, source)
    try:
        return torch.load(filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise UnsafeCheckpointError(_refusal_message(source, e)) from None
    except (EOFError, RuntimeError) as e:  # a legacy-format file cut short, a bad record
        raise DamagedCheckpointError(f'Refusing to load checkpoint {source}: torch cannot read '
                                     f'it ({type(e).__name__}: {e}).') from None


def _refusal_message(source, error: Exception) -> str:
    """What ``source`` pickles that safe loading refused, and what the user can do about it.

    torch's own text suggests ``add_safe_globals([X])`` for whatever X was refused, even
    ``print`` or ``getattr``, which would let any checkpoint run code; so that text is not passed
    on (the error is raised ``from None``), and the hint is only given for a plain data class.
    """
    what, cls_name = _describe_refusal(str(error))
    if cls_name is not None and _is_plain_data_class(cls_name):
        advice = (f'If you trust this file, allow that class with '
                  f'torch.serialization.add_safe_globals([{cls_name}]) before loading.')
    else:
        advice = ('Do not allow-list it: if you trust this file, re-save it as a plain state '
                  'dict (tensors, numbers, strings, lists and dicts), e.g. '
                  "torch.save({'state_dict': model.state_dict()}, path).")
    return (f'Refusing to load {source}: it contains {what}, which safe (weights-only) '
            'loading does not allow; mmkd allows tensors, plain containers and MMEngine\'s own '
            f'checkpoint types. {advice}')


_OPCODE_NAMES = {op.code: op.name for op in pickletools.opcodes}


def _describe_refusal(message: str) -> Tuple[str, Optional[str]]:
    """Words for the construct torch's weights-only unpickler refused, and its class if one.

    Each pattern is one message shape of ``torch/_weights_only_unpickler.py`` (or of
    :func:`_history_buffer_getattr`); what they name is only ever read, never imported.
    """
    obj = r'(<[^>]*>|\S+)'  # the repr torch formats into the message
    found = re.search(r'Unsupported global: GLOBAL (\S+) was not an allowed global', message)
    if found:  # torch writes builtins.print as just print
        name = _builtin_qualified(found.group(1))
        return f'the global {name}', name
    found = re.search(r'unsupported GLOBAL (\S+) whose module (\S+) is blocked', message)
    if found:
        return (f'the global {found.group(1)} (nothing from module {found.group(2)} is ever '
                'allowed)'), None
    found = re.search(r'getattr\((.*?), (.*?)\) is not allowed', message)
    if found:
        return (f'the lookup getattr({found.group(1)}, {found.group(2)}) (getattr is only '
                'allowed for HistoryBuffer statistics methods)'), None
    found = re.search(r'Can only create new object .*? but got ' + obj, message)
    if found:
        what, name = _describe_object(found.group(1))
        return f'a new object of {what} (pickle NEWOBJ)', name
    found = re.search(r'call reduce for unrecognized function ' + obj, message)
    if found:
        return f'a call of {_describe_object(found.group(1))[0]} (pickle REDUCE)', None
    found = re.search(r'Can only build .*? but got ' + obj, message)
    if found:
        what, name = _describe_object(found.group(1))
        return f'state set on an object of {what} (pickle BUILD)', name
    found = re.search(r'Unsupported operand (\d+)', message)
    if found:
        code = chr(int(found.group(1)))
        return f'the pickle opcode {_OPCODE_NAMES.get(code, repr(code))}', None
    if 'persistent_load' in message or 'persistent id' in message:
        return 'a persistent id that is not a tensor storage', None
    found = re.search(r'Can only (\w+) (?:for|to) ', message)
    if found:  # SETITEM on a non-dict, APPEND on a non-list ...
        return f'a pickle {found.group(1)} applied to an object of the wrong type', None
    inner = message.split('WeightsUnpickler error:')[-1].split('Check the documentation')[0]
    return f'something the weights-only unpickler refused ({" ".join(inner.split())[:300]})', None


def _builtin_qualified(name: str) -> str:
    return name if '.' in name else f'builtins.{name}'


def _describe_object(text: str) -> Tuple[str, Optional[str]]:
    """Words for an object repr in torch's message, and its dotted name if it is a class."""
    found = re.fullmatch(r"<class '([\w.]+)'>", text)
    if found:
        name = _builtin_qualified(found.group(1))
        return f'type {name}', name
    found = re.match(r'<((?:built-in |bound )?(?:function|method)) ([\w.]+)', text)
    if found:
        return f'the {found.group(1)} {found.group(2)}', None
    return f'the object {text[:80]}', None


# Modules whose contents can run code or reach the system; never suggested for the allow-list.
_NEVER_ALLOW = frozenset({
    'builtins', '__builtin__', 'os', 'posix', 'nt', 'sys', 'subprocess', 'importlib', 'runpy',
    'pickle', '_pickle', 'copyreg', 'shutil', 'socket', 'ctypes', 'code', 'codeop', 'pty',
    'marshal', 'types', 'functools', 'operator', 'io', '_io', 'webbrowser', 'multiprocessing',
    'signal', 'shelve', 'tempfile', 'pathlib', 'inspect', 'threading', 'asyncio'})


def _is_plain_data_class(name: str) -> bool:
    """Whether ``name`` is an already imported class that unpickles without code of its own.

    Only such a class can sensibly be allow-listed: unpickling calls ``cls.__new__`` and
    ``__setstate__``, so a class overriding either runs code; a function never qualifies. The
    module is looked up in ``sys.modules`` only, since importing an attacker-named module runs it.
    """
    parts = name.split('.')
    if parts[0] in _NEVER_ALLOW:
        return False
    for cut in range(len(parts) - 1, 0, -1):
        obj = sys.modules.get('.'.join(parts[:cut]))
        if obj is not None:
            break
    else:
        return False
    for attr in parts[cut:]:  # getattr_static: no module __getattr__ or descriptor runs
        obj = inspect.getattr_static(obj, attr, None)
    return (isinstance(obj, type) and obj.__new__ is object.__new__
            and getattr(obj, '__setstate__', None) is None)


def extract_student_state_dict(state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Keys ``student.X`` of a distiller state dict, renamed ``X`` for the plain model."""
    prefix = 'student.'
    out = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    if not out:
        raise KeyError('No "student.*" keys in this checkpoint: is it a distiller checkpoint?')
    return out
