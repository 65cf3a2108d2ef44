"""Auto-resume that survives a damaged latest checkpoint.

``--resume`` without a path asks MMEngine for the file named in ``<work_dir>/last_checkpoint``.
When that file is truncated or corrupt (a kill or a full disk during a save with a writer that
is not atomic, a partial copy), MMEngine fails and the user has to edit files by hand.
:func:`find_resumable_checkpoint` checks the named file and falls back to the newest readable
Runner checkpoint in the work dir, warning about each damaged one it passes over.
"""
import glob
import logging
import os.path as osp
from typing import List, Optional, Tuple

from mmengine.logging import print_log

from .checkpoint_file import archive_problem, file_problem

#: What every checkpoint MMEngine's Runner saves holds (``Runner.save_checkpoint``).
RUNNER_KEYS = ('meta', 'state_dict', 'message_hub')


def checkpoint_damage(path: str) -> Optional[str]:
    """Why the checkpoint at ``path`` cannot be read, or None if it is intact.

    torch's checkpoints are zip archives with a CRC-32 per record: a truncated file has no
    central directory and a corrupted one fails its CRC, both found without unpickling; an
    archive declaring implausible sizes (a zip bomb) is refused before anything is inflated
    (:mod:`mmkd.utils.checkpoint_file`).
    """
    reason = file_problem(path)
    if reason is not None:
        return reason
    found = archive_problem(path, verify_crc=True)
    return None if found is None else found[1]


def runner_checkpoint_problem(path: str) -> Optional[str]:
    """Why the intact checkpoint at ``path`` is not one the Runner can resume from (an exported
    student, a teacher, templates...), or None. Reads only the pickled structure: tensors are
    memory-mapped, not loaded."""
    import torch
    try:
        ckpt = torch.load(path, map_location='cpu', weights_only=True, mmap=True)
    except Exception as e:  # refused or unreadable: not a candidate either way
        return f'it cannot be loaded ({type(e).__name__})'
    keys = set(ckpt) if isinstance(ckpt, dict) else set()
    missing = [k for k in RUNNER_KEYS if k not in keys]
    if missing:
        return (f'not a training checkpoint of the Runner (no {missing}: an exported model or '
                'another file)')
    return None


def _candidates(work_dir: str) -> List[str]:
    named = []
    last = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(last):
        with open(last) as f:
            target = f.read(4096).strip()  # one path, as CheckpointHook writes it
        if target:
            named.append(target if osp.isabs(target) else osp.join(work_dir, target))
    others = sorted(glob.glob(osp.join(work_dir, '*.pth')), key=lambda p: (osp.getmtime(p), p),
                    reverse=True)
    return list(dict.fromkeys(named + [p for p in others if osp.abspath(p) not in
                                       {osp.abspath(n) for n in named}]))


def find_resumable_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint ``--resume`` should continue from: the one ``last_checkpoint`` names if
    it is intact, else the newest intact Runner checkpoint among the ``*.pth`` in ``work_dir``
    (with a warning naming each damaged file skipped; files that are not Runner checkpoints,
    e.g. an exported ``student.pth``, are never candidates). None when the work dir holds no
    checkpoint (a fresh start, as in MMEngine); a RuntimeError when it holds only damaged
    ones."""
    damaged: List[Tuple[str, str]] = []
    for path in _candidates(work_dir):
        reason = checkpoint_damage(path)
        if reason is None:
            other = runner_checkpoint_problem(path)
            if other is not None:
                print_log(f'Not resuming from {path}: {other}.', logger='current',
                          level=logging.INFO)
                continue
            for bad, why in damaged:
                print_log(f'Checkpoint {bad} is damaged ({why}); resuming from the newest '
                          f'readable checkpoint, {path}, instead.', logger='current',
                          level=logging.WARNING)
            return path
        damaged.append((path, reason))
    if damaged:
        raise RuntimeError('No readable checkpoint to resume from in '
                           f'{work_dir}: ' + '; '.join(f'{p}: {r}' for p, r in damaged))
    return None
