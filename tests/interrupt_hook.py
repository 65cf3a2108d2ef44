"""Test helper: a hook that kills training right after a given iteration or epoch (after that
iteration's or epoch's checkpoint has been saved)."""
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module(force=True)
class InterruptTrainingAt(Hook):
    priority = 'LOWEST'  # after CheckpointHook has saved this iteration / epoch

    def __init__(self, iteration: int = None, epoch: int = None):
        self.iteration = iteration
        self.epoch = epoch

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if self.iteration is not None and runner.iter + 1 == self.iteration:
            raise KeyboardInterrupt(f'simulated interruption after iteration {self.iteration}')

    def after_train_epoch(self, runner):
        if self.epoch is not None and runner.epoch + 1 == self.epoch:
            raise KeyboardInterrupt(f'simulated interruption after epoch {self.epoch}')
