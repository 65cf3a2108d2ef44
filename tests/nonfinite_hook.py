"""Test helper: make one rank's loss non-finite at one iteration (see
tests/test_nonfinite_e2e.py)."""
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS


def _distiller(runner):
    return runner.model.module if is_model_wrapper(runner.model) else runner.model


@HOOKS.register_module(force=True)
class NaNStudentLogitsAt(Hook):
    """At ``iteration`` (1-based) on ``rank``, the student's classifier gets a NaN input once
    (as a diverging student would produce)."""

    def __init__(self, iteration: int, rank: int = 0):
        self.iteration, self.rank, self.handle = iteration, rank, None

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter + 1 == self.iteration and get_rank() == self.rank:
            self.handle = _distiller(runner).student.head.fc.register_forward_pre_hook(
                lambda module, args: (args[0] * float('nan'), *args[1:]))

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if self.handle is not None:
            self.handle.remove()
            self.handle = None
