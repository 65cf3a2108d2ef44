"""Test helper: a hook that kills training right after a given iteration (after checkpoints)."""
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module(force=True)
class InterruptTrainingAt(Hook):
    priority = 'LOWEST'  # after CheckpointHook has saved this iteration

    def __init__(self, iteration: int):
        self.iteration = iteration

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 == self.iteration:
            raise KeyboardInterrupt(f'simulated interruption after iteration {self.iteration}')
