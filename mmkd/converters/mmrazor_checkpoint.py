"""Convert an MMRazor 1.x distillation checkpoint into an mmkd one.

MMRazor's distillation algorithms (``SingleTeacherDistill``, ``FpnTeacherDistill``,
``OverhaulFeatureDistillation``, ``SelfDistill``, ``DataFreeDistillation``) are MMEngine models
whose submodules give the state dict's key prefixes:

===================================  ==========================================================
MMRazor key                          mmkd key
===================================  ==========================================================
``architecture.X`` (the student)     ``student.X`` (``X`` with ``student_only``)
``data_preprocessor.X``              the same module as ``architecture.data_preprocessor``
                                     (``BaseAlgorithm`` reuses the student's): dropped as a
                                     duplicate, else ``student.data_preprocessor.X``
``distiller.connectors.<name>.Y``    ``<prefix>Y`` with ``connector_map={<name>: <prefix>}``
                                     (``<prefix>`` a method module, ``methods.<block>....``);
                                     dropped with ``student_only``; else unplaced
``teacher.*`` / ``teachers.*``       dropped (``dropped_teacher``): the teacher is a submodule of
                                     MMRazor's algorithm whether trainable or not, so MMRazor
                                     saves it; mmkd never checkpoints a teacher, it loads it
                                     from the config's ``teacher.checkpoint``
any other key                        unplaced (``distiller.distill_losses.*``, ``generator.*``):
                                     an error naming the keys, unless ``allow_unplaced`` (then
                                     left out, and listed)
===================================  ==========================================================

Of the Runner checkpoint around the state dict only what mmkd can use is kept: ``state_dict``
and a ``meta`` naming the source file (``mmkd_source_checkpoint``, as
``tools/model_converters/extract_student.py`` writes), plus ``dataset_meta`` (class names) when
the source has it. ``optimizer``, ``param_schedulers``, ``message_hub`` and MMRazor's other meta
(epoch, iteration, seed, the config text ``cfg``, which is never executed) describe MMRazor's
run, not the converted model: they are dropped and listed (``dropped_entries``). The result is
for ``load_from`` (or, with ``student_only``, the student's own base config), not for resuming.

The source is read with mmkd's safe loader (the archive checks of
:mod:`mmkd.utils.checkpoint_file`, then a weights-only ``torch.load``); the output is written
atomically and only when every key is placed (or ``allow_unplaced``).
"""
import io
import os.path as osp
from typing import Dict, List, Optional

import torch

STUDENT = 'architecture.'
PREPROCESSOR = 'data_preprocessor.'
CONNECTORS = 'distiller.connectors.'
TEACHERS = ('teacher.', 'teachers.')
METHODS = 'methods.'
MAX_NAMED = 10


def _show(keys: List[str]) -> str:
    return f'{keys[:MAX_NAMED]}{" ..." if len(keys) > MAX_NAMED else ""}'


def _load(src: str) -> dict:
    """The checkpoint at ``src`` through mmkd's safe loader; its dict and state dict checked."""
    if '://' in src:  # a URL or another scheme: MMEngine's dispatch, made safe by mmkd's
        # import (mmkd/__init__.py registers the guarded loaders)
        from mmengine.runner.checkpoint import _load_checkpoint
        ckpt = _load_checkpoint(src, map_location='cpu')
    else:
        from mmkd.utils.checkpoint import safe_torch_load
        ckpt = safe_torch_load(osp.expanduser(src), map_location='cpu', source=src)
    if not isinstance(ckpt, dict):
        raise TypeError(f'{src} holds a {type(ckpt).__name__}, not an MMRazor checkpoint (a '
                        'Runner checkpoint: a dict with "state_dict" and "meta").')
    state = ckpt.get('state_dict')
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        found = ('no "state_dict"' if 'state_dict' not in ckpt else
                 f'a "state_dict" that is a {type(state).__name__}, not names -> tensors')
        raise ValueError(f'{src} holds {found} (its entries: {sorted(map(str, ckpt))}); an '
                         'MMRazor checkpoint is a Runner checkpoint with the algorithm\'s '
                         'weights under "state_dict".')
    if not any(k.startswith(STUDENT) for k in state):
        hint = (' It looks like an mmkd distillation checkpoint already (student.* keys).'
                if any(k.startswith('student.') for k in state) else '')
        raise ValueError(f'{src} has no "architecture.*" keys, so it is not an MMRazor '
                         f'distillation checkpoint (the student is saved as architecture.X); '
                         f'its first keys: {_show(sorted(state))}.{hint}')
    return ckpt


def _connector_prefixes(connector_map: Optional[Dict[str, str]], state: dict
                        ) -> Dict[str, str]:
    """``connector_map`` as full key prefixes (MMRazor ``distiller.connectors.<name>.`` ->
    mmkd ``methods.<...>.``), checked against the checkpoint's connectors."""
    present = sorted({k[len(CONNECTORS):].split('.')[0] for k in state
                      if k.startswith(CONNECTORS)})
    out = {}
    for old, new in (connector_map or {}).items():
        if not isinstance(old, str) or not isinstance(new, str) or not old or not new:
            raise TypeError(f'connector_map entry {old!r}: {new!r}: both sides are non-empty '
                            'strings (an MMRazor connector name or key prefix -> an mmkd key '
                            'prefix).')
        old_prefix = old.rstrip('.') + '.'
        if not old_prefix.startswith('distiller.'):
            old_prefix = CONNECTORS + old_prefix
        new_prefix = new.rstrip('.') + '.'
        if not new_prefix.startswith(METHODS) or new_prefix == METHODS:
            raise ValueError(f'connector_map[{old!r}] = {new!r}: a connector goes into a method '
                             "module of the mmkd distiller, a prefix 'methods.<block>.<module>' "
                             "(e.g. 'methods.feat.connectors.0').")
        if not any(k.startswith(old_prefix) for k in state):
            raise ValueError(f'connector_map[{old!r}]: the checkpoint has no keys under '
                             f'{old_prefix!r}; its connectors are {present} (under '
                             f'{CONNECTORS!r}).')
        out[old_prefix] = new_prefix
    return out


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b)
    return a is b


def _mapped(key: str, prefixes: Dict[str, str]) -> Optional[str]:
    """``key`` with the longest matching MMRazor prefix replaced, or None."""
    best = max((p for p in prefixes if key.startswith(p)), key=len, default=None)
    return None if best is None else prefixes[best] + key[len(best):]


def convert_checkpoint(src: str, dst: str, student_only: bool = False,
                       connector_map: Optional[Dict[str, str]] = None,
                       allow_unplaced: bool = False) -> dict:
    """Convert the MMRazor distillation checkpoint ``src`` into an mmkd checkpoint ``dst``.

    Args:
        src (str): the MMRazor checkpoint (a path, or a URL MMEngine loads), read safely.
        dst (str): where to write the converted checkpoint (atomically).
        student_only (bool): write a plain student checkpoint (``X`` for ``architecture.X``,
            as ``tools/model_converters/extract_student.py`` writes) that the student's own
            base config loads; connectors are dropped (and listed). Default: an mmkd training
            checkpoint for the Distiller (``student.X`` and the mapped connectors), for
            ``load_from``.
        connector_map (dict, optional): MMRazor connector name (``'loss_s4'``) or key prefix
            (``'distiller.connectors.loss_s4'``) -> mmkd key prefix of the method module that
            takes its weights (``'methods.feat.connectors.0'``); the state dicts below the
            prefixes must match (the Distiller's load checks it).
        allow_unplaced (bool): write the checkpoint even when some keys map to nothing in mmkd
            (they are left out, and listed). Default: such keys are an error.

    Returns:
        dict: ``placed`` {MMRazor key: mmkd key}, ``unplaced`` [keys no rule places],
        ``dropped_teacher`` [the teacher's keys], ``dropped`` [other state-dict keys left out
        on purpose: connectors with ``student_only``, the algorithm's duplicate of the
        student's preprocessor], ``dropped_entries`` [checkpoint entries and meta fields not
        carried over].

    Raises:
        ValueError: keys no rule places (naming up to 10 and the count) without
            ``allow_unplaced``; a checkpoint without a state dict or ``architecture.*`` keys;
            a ``connector_map`` entry that matches nothing or points outside ``methods.``.
            Nothing is written then.
        TypeError: ``src`` does not hold a dict.
        mmkd.utils.checkpoint_file.CheckpointFileError, UnsafeCheckpointError: ``src`` is
            missing, damaged, oversized or pickles code (the safe loader's errors).
    """
    ckpt = _load(src)
    state = ckpt['state_dict']
    prefixes = {} if student_only else _connector_prefixes(connector_map, state)
    placed: Dict[str, str] = {}
    unplaced: List[str] = []
    dropped_teacher: List[str] = []
    dropped: List[str] = []
    student_prefix = '' if student_only else 'student.'
    for key in state:
        if key.startswith(STUDENT):
            placed[key] = student_prefix + key[len(STUDENT):]
        elif key.startswith(TEACHERS):
            dropped_teacher.append(key)
        elif key.startswith(PREPROCESSOR):
            twin = STUDENT + key
            if twin in state and _same(state[twin], state[key]):
                dropped.append(key)  # the same module, saved twice
            elif twin in state:
                unplaced.append(key)  # a different preprocessor: no place for it in mmkd
            else:
                placed[key] = student_prefix + key
        elif student_only and key.startswith(CONNECTORS):
            dropped.append(key)
        else:
            new = _mapped(key, prefixes)
            if new is None:
                unplaced.append(key)
            else:
                placed[key] = new
    if unplaced and not allow_unplaced:
        raise ValueError(
            f'{src}: {len(unplaced)} key(s) have no place in the mmkd checkpoint: '
            f'{_show(unplaced)}. Map connectors to method modules with connector_map '
            '(--connector-map NAME=methods.<block>.<module>), or write the checkpoint without '
            'them with allow_unplaced (--allow-unplaced). Nothing was written.')
    out_state = {new: state[old] for old, new in placed.items()}
    clash = len(out_state) != len(placed)
    if clash:
        seen: Dict[str, str] = {}
        twice = []
        for old, new in placed.items():
            if new in seen:
                twice.append(f'{seen[new]} and {old} -> {new}')
            seen[new] = old
        raise ValueError(f'{src}: several keys map to one mmkd key: {_show(twice)}. Check '
                         'connector_map. Nothing was written.')
    meta_in = ckpt.get('meta') if isinstance(ckpt.get('meta'), dict) else {}
    meta = dict(mmkd_source_checkpoint=src if '://' in src else osp.abspath(src),
                mmkd_converted_from='MMRazor (tools/model_converters/mmrazor2mmkd.py'
                + (', student only)' if student_only else ')'))
    if 'dataset_meta' in meta_in:
        meta['dataset_meta'] = meta_in['dataset_meta']
    dropped_entries = [str(k) for k in ckpt if k not in ('state_dict', 'meta')]
    if 'meta' in ckpt and not isinstance(ckpt['meta'], dict):
        dropped_entries.append('meta')
    dropped_entries += [f'meta.{k}' for k in meta_in if k != 'dataset_meta']
    buffer = io.BytesIO()
    torch.save(dict(state_dict=out_state, meta=meta), buffer)
    from mmkd.utils.atomic_io import atomic_write
    atomic_write(buffer.getvalue(), dst)
    return dict(placed=placed, unplaced=unplaced, dropped_teacher=dropped_teacher,
                dropped=dropped, dropped_entries=dropped_entries)
