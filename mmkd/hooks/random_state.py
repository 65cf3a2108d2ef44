"""Exact resume: every random-number generator's state travels with the checkpoint.

MMEngine's checkpoints hold the weights, optimiser, schedulers and message hub, but not the
state of the random-number generators, so a resumed run draws different noise (DiffKD's
diffusion timesteps and noise, dropout, random augmentations) from the one it interrupted and
drifts from it. This hook saves the states of Python's ``random``, NumPy's global generator,
torch's CPU generator and every CUDA generator in each checkpoint, and restores them on
resume at the point where the interrupted run would have continued:

- epoch-based loops resume at an epoch boundary: the states are restored in ``before_train``,
  before the next epoch's data loader iterator is created (creating one draws a seed);
- ``IterBasedTrainLoop`` first re-reads the ``k`` batches already trained on (its "advance
  dataloader" step, which runs the data pipeline and so draws random numbers in the main
  process when ``num_workers=0``); the states are restored right after that, before batch
  ``k + 1`` is fetched.

Validation runs between a checkpoint and the next training batch in the uninterrupted run but
not in the resumed one, so validation is made neutral: the states are saved before it and put
back after it (training then draws the same numbers whether or not, and how often, it
validates).

With several processes each rank's states are gathered when a checkpoint is due and rank ``r``
gets its own back on resume with the same world size; otherwise the saved states are not
applied (with a warning) and the run continues from the seeds MMEngine sets.
"""
import logging
import random
from typing import List, Optional

import numpy as np
import torch
from mmengine.dist import all_gather_object, get_dist_info
from mmengine.hooks import CheckpointHook, Hook
from mmengine.logging import print_log
from mmengine.runner import IterBasedTrainLoop

from ..registry import HOOKS

CHECKPOINT_KEY = 'random_state'


def capture_random_state() -> dict:
    """The states of python's, numpy's, torch's and (if initialised) CUDA's generators, as
    tensors and plain numbers (loadable with ``weights_only=True``)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = dict(
        python=random.getstate(),
        numpy=dict(kind=kind, keys=torch.from_numpy(keys.astype(np.int64)), pos=int(pos),
                   has_gauss=int(has_gauss), cached_gaussian=float(cached)),
        torch=torch.get_rng_state())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def restore_random_state(state: dict) -> None:
    """Put back what :func:`capture_random_state` returned."""
    version, internal, gauss = state['python']
    random.setstate((version, tuple(internal), gauss))
    n = state['numpy']
    np.random.set_state((n['kind'], n['keys'].numpy().astype(np.uint32), n['pos'],
                         n['has_gauss'], n['cached_gaussian']))
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


class _RestoreAfterReplay:
    """Stands in for IterBasedTrainLoop's data iterator: after the loop has re-read the
    ``replay`` batches already trained on, restore the states, then get out of the way."""

    def __init__(self, loop, replay: int, state: dict):
        self.loop, self.inner, self.remaining, self.state = loop, loop.dataloader_iterator, \
            replay, state

    def __iter__(self):
        return self

    def __next__(self):
        if self.remaining == 0:
            restore_random_state(self.state)
            self.loop.dataloader_iterator = self.inner
            return next(self.inner)
        self.remaining -= 1
        return next(self.inner)


@HOOKS.register_module()
class RandomStateHook(Hook):
    """Save the random-number generators' states in checkpoints and restore them on resume,
    so that an interrupted-and-resumed run equals the uninterrupted one (see the module
    docstring). ``tools/train.py`` adds it to every run."""

    # Before CheckpointHook ('VERY_LOW') in after_train_iter/epoch: gather ranks' states first.
    priority = 'LOW'

    def __init__(self):
        self._pending: Optional[dict] = None   # loaded on resume, applied in before_train
        self._gathered: Optional[List[dict]] = None
        self._val_states: List[dict] = []

    # -------------------------------------------------------------- saving
    def _checkpoint_due(self, runner, by_epoch: bool) -> bool:
        for hook in runner.hooks:
            if not isinstance(hook, CheckpointHook) or hook.by_epoch != by_epoch:
                continue
            if by_epoch:
                due = hook.every_n_epochs(runner, hook.interval, hook.save_begin) or (
                    hook.save_last and hook.is_last_train_epoch(runner))
            else:
                due = hook.every_n_train_iters(runner, hook.interval, hook.save_begin) or (
                    hook.save_last and hook.is_last_train_iter(runner))
            if due:
                return True
        return False

    def _gather_if_due(self, runner, by_epoch: bool):
        self._gathered = None
        if get_dist_info()[1] > 1 and self._checkpoint_due(runner, by_epoch):
            self._gathered = all_gather_object(capture_random_state())

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self._gather_if_due(runner, by_epoch=False)

    def after_train_epoch(self, runner):
        self._gather_if_due(runner, by_epoch=True)

    def before_save_checkpoint(self, runner, checkpoint):
        world_size = get_dist_info()[1]
        if self._gathered is not None:
            ranks = self._gathered
        elif world_size == 1:
            ranks = [capture_random_state()]
        else:  # a save this hook did not foresee (e.g. best checkpoint): rank 0's only
            ranks = []
        checkpoint[CHECKPOINT_KEY] = dict(world_size=world_size, ranks=ranks)

    # -------------------------------------------------------------- resuming
    def after_load_checkpoint(self, runner, checkpoint):
        # Only a resume continues the interrupted run; `load_from` starts a new one.
        if not getattr(runner, '_resume', False):
            return
        saved = checkpoint.get(CHECKPOINT_KEY)
        rank, world_size = get_dist_info()
        if saved is None:
            print_log('The checkpoint has no random-number generator states (saved without '
                      'mmkd.RandomStateHook): the resumed run will not repeat the interrupted '
                      'one exactly.', logger='current', level=logging.WARNING)
        elif saved['world_size'] != world_size or len(saved['ranks']) != world_size:
            print_log(f'The checkpoint holds random-number generator states for '
                      f'{len(saved["ranks"])} of {saved["world_size"]} processes; this run has '
                      f'{world_size}: they are not restored.', logger='current', level=logging.WARNING)
        else:
            self._pending = saved['ranks'][rank]

    def before_train(self, runner):
        if self._pending is None:
            return
        state, self._pending = self._pending, None
        restore_random_state(state)
        loop = runner.train_loop
        if isinstance(loop, IterBasedTrainLoop) and loop.iter > 0:
            loop.dataloader_iterator = _RestoreAfterReplay(loop, loop.iter, state)

    # -------------------------------------------------------------- neutral validation
    def before_val(self, runner):
        self._val_states.append(capture_random_state())

    def after_val(self, runner):
        if self._val_states:
            restore_random_state(self._val_states.pop())
