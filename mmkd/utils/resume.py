"""Auto-resume that survives a damaged latest checkpoint.

``--resume`` without a path asks MMEngine for the file named in ``<work_dir>/last_checkpoint``.
When that file is truncated or corrupt (a kill or a full disk during a save with a writer that
is not atomic, a partial copy), MMEngine fails and the user has to edit files by hand.
:func:`find_resumable_checkpoint` checks the named file and falls back to the newest readable
checkpoint in the work dir, warning about each damaged one it passes over.
"""
import glob
import logging
import os.path as osp
import zipfile
from typing import List, Optional, Tuple

from mmengine.logging import print_log


def checkpoint_damage(path: str) -> Optional[str]:
    """Why the checkpoint at ``path`` cannot be read, or None if it is intact.

    torch's checkpoints are zip archives with a CRC-32 per record: a truncated file has no
    central directory and a corrupted one fails its CRC, both found without unpickling.
    """
    if not osp.isfile(path):
        return 'the file does not exist'
    if osp.getsize(path) == 0:
        return 'the file is empty'
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except zipfile.BadZipFile as e:
        return f'not a complete zip archive ({e}): truncated or not a torch checkpoint'
    except (OSError, EOFError, RuntimeError, ValueError) as e:
        return f'unreadable ({type(e).__name__}: {e})'
    if bad is not None:
        return f'record {bad!r} fails its CRC check (corrupted)'
    return None


def _candidates(work_dir: str) -> List[str]:
    named = []
    last = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(last):
        with open(last) as f:
            target = f.read().strip()
        if target:
            named.append(target if osp.isabs(target) else osp.join(work_dir, target))
    others = sorted(glob.glob(osp.join(work_dir, '*.pth')), key=lambda p: (osp.getmtime(p), p),
                    reverse=True)
    return list(dict.fromkeys(named + [p for p in others if osp.abspath(p) not in
                                       {osp.abspath(n) for n in named}]))


def find_resumable_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint ``--resume`` should continue from: the one ``last_checkpoint`` names if
    it is intact, else the newest intact ``*.pth`` in ``work_dir`` (with a warning naming each
    damaged file skipped). None when the work dir holds no checkpoint (a fresh start, as in
    MMEngine); a RuntimeError when it holds only damaged ones."""
    damaged: List[Tuple[str, str]] = []
    for path in _candidates(work_dir):
        reason = checkpoint_damage(path)
        if reason is None:
            for bad, why in damaged:
                print_log(f'Checkpoint {bad} is damaged ({why}); resuming from the newest '
                          f'readable checkpoint, {path}, instead.', logger='current', level=logging.WARNING)
            return path
        damaged.append((path, reason))
    if damaged:
        raise RuntimeError('No readable checkpoint to resume from in '
                           f'{work_dir}: ' + '; '.join(f'{p}: {r}' for p, r in damaged))
    return None
