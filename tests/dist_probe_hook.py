"""Test helper for multi-process runs, loaded into every rank through ``custom_imports`` with
tests/ on PYTHONPATH (see tests/test_distributed.py).

* ``DumpRankWeights``: when training ends, each rank saves its model's ``state_dict`` and
  parameter names to ``<work_dir>/weights_rank<RANK>.pth`` (the checkpoint is written by rank 0
  only) and prints the gloo threads it has then.
* At interpreter exit (after ``main()`` and its teardown, before Python shuts down) each rank
  prints the gloo threads still alive: left running they can abort the process (see
  ``mmkd.utils.dist.tear_down_process_group``).
"""
import atexit
import os
import os.path as osp
import sys

import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS


def gloo_threads() -> list:
    """Names of this process's live native threads that gloo started (Linux)."""
    names = []
    for tid in os.listdir('/proc/self/task'):
        try:
            with open(f'/proc/self/task/{tid}/comm') as f:
                names.append(f.read().strip())
        except OSError:  # the thread ended meanwhile
            pass
    return sorted(name for name in names if 'gloo' in name)


def report(line: str):
    # One write: ranks share the launcher's stdout, unbuffered (python -u), and print() would
    # write the newline separately.
    sys.stdout.write(f'[probe] {line}\n')
    sys.stdout.flush()


@HOOKS.register_module(force=True)
class DumpRankWeights(Hook):

    def after_train(self, runner):
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        rank = get_rank()
        # The parameter names too: DDP keeps only those equal on every rank (each rank's
        # batch-norm statistics are its own).
        torch.save(dict(state_dict=model.state_dict(),
                        parameters=[name for name, _ in model.named_parameters()]),
                   osp.join(runner.work_dir, f'weights_rank{rank}.pth'))
        report(f'rank {rank} gloo threads after training: {gloo_threads()}')


@atexit.register
def _report_threads_at_exit():
    # RANK is read now: under srun it is only set once the tool has started.
    report(f'rank {os.environ.get("RANK")} gloo threads at exit: {gloo_threads()}')
