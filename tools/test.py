"""Evaluate a trained model with the config's test dataloader and evaluator.

    python tools/test.py CONFIG CHECKPOINT            # a distiller's student (the default)
    python tools/test.py CONFIG --teacher             # the teacher alone, from its checkpoint
    python tools/test.py BASE_CONFIG student.pth      # an exported student in its plain config
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mmengine.config import DictAction  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

import mmkd  # noqa: E402,F401
from mmkd.utils import (LoadTestCheckpointHook, load_tool_config,  # noqa: E402
                        setup_cpu_distributed)
from mmkd.utils.dist import tear_down_process_group  # noqa: E402


def parse_args():
    parser = argparse.ArgumentParser(description='Test a model (mmkd)')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', nargs='?', help='checkpoint file (not needed with '
                        '--teacher)')
    parser.add_argument('--teacher', action='store_true',
                        help='evaluate the distiller\'s teacher alone (weights from its own '
                        'checkpoint) instead of the student')
    parser.add_argument('--work-dir', help='the dir to save logs and results')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings in the config, key=value')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    if args.checkpoint is None and not args.teacher:
        parser.error('a checkpoint is required unless --teacher is given')
    return args


def main():
    args = parse_args()
    cfg = load_tool_config(args.config, args.launcher, args.cfg_options, args.work_dir)

    if args.teacher:
        if 'teacher' not in cfg.model:
            raise SystemExit(f'--teacher: {args.config} has no model.teacher (not a '
                             'distillation config).')
        cfg.model.eval_teacher = True
    # The checkpoint is loaded below, not by the Runner (which would load any key mismatch
    # non-strictly and score random weights); the teacher loads its own checkpoint.
    cfg.load_from = None
    if args.launcher != 'none':
        setup_cpu_distributed(cfg)

    runner = Runner.from_cfg(cfg)
    if not args.teacher:
        # Where the Runner would load it: after every other hook's before_run.
        runner.register_hook(LoadTestCheckpointHook(args.checkpoint), priority='LOWEST')
    runner.test()


if __name__ == '__main__':
    with tear_down_process_group():
        main()
