"""Train a model (distiller or plain) from a config, as OpenMMLab's tools/train.py does.

    python tools/train.py configs/kd/resnet34_resnet18_8xb32_in1k.py [--amp] [--resume [CKPT]]
    bash tools/dist_train.sh CONFIG NUM_PROCESSES [ARGS]
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a clone

# Only what parsing needs (no torch): --help and usage errors answer at once; the Runner, torch
# and the OpenMMLab packages (seconds to import) come in main(), after the arguments.
from mmengine.config import DictAction  # noqa: E402


def parse_args():
    parser = argparse.ArgumentParser(description='Train a model (mmkd)')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument('--allow-shared-work-dir', action='store_true',
                        help='start even when another run holds the work dir\'s lock '
                        '(train.lock); by default such a run is refused, as both would '
                        'overwrite each other\'s checkpoints')
    parser.add_argument('--amp', action='store_true', help='enable automatic mixed precision')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from the given checkpoint, or from the latest one in '
                        'the work dir when no path is given')
    parser.add_argument('--allow-objective-change', action='store_true',
                        help='resume even when the distillation objective (student, blocks, '
                        'methods and their arguments, teachers, record points) differs from '
                        'the one the checkpoint was trained for: a warning instead of an '
                        'error (loss-weight and schedule changes are always allowed)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings in the config, key=value')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main(args=None):
    args = args or parse_args()
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner

    import mmkd  # noqa: F401  (registers modules, safe checkpoint loading)
    from mmkd.utils import (cached_teachers, default_train_hooks, find_resumable_checkpoint,
                            is_distiller_config, load_tool_config, setup_cpu_distributed)
    from mmkd.utils.work_dir_lock import WorkDirInUseError, lock_work_dir

    cfg = load_tool_config(args.config, args.launcher, args.cfg_options, args.work_dir)
    try:  # before anything reads or writes the work dir; held until the process ends
        work_dir_lock = lock_work_dir(cfg.work_dir, args.config,  # noqa: F841
                                      args.allow_shared_work_dir, args.launcher)
    except WorkDirInUseError as e:
        raise SystemExit(f'{type(e).__name__}: {e}')

    if args.amp:
        import torch
        if not torch.cuda.is_available():
            raise SystemExit('--amp: MMEngine\'s AmpOptimWrapper needs a CUDA (or NPU/MLU) '
                             'device; none is available. Train without --amp on a CPU.')
        optim_wrapper = cfg.optim_wrapper.get('type', 'OptimWrapper')
        if optim_wrapper == 'AmpOptimWrapper':
            print('AMP training is already enabled in the config.')
        else:
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')

    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    if cfg.get('resume') and cfg.get('load_from') is None:
        # Auto-resume: the checkpoint `last_checkpoint` names, or the newest readable one if
        # that one is damaged (MMEngine would fail on it).
        cfg.load_from = find_resumable_checkpoint(cfg.work_dir)
        if cfg.load_from is None:
            cfg.resume = False  # nothing to resume from: a fresh start, as in MMEngine

    # Checkpoints carry the random-number generators' states: resume repeats the run exactly.
    default_train_hooks(cfg)
    if cached_teachers(cfg.model):  # a cache built for other batches is refused at once
        default_train_hooks(cfg, ('mmkd.TeacherCacheHook',))
    wrapper_type = str((cfg.get('model_wrapper_cfg') or {}).get('type', ''))
    if wrapper_type.split('.')[-1] == 'DistillerFSDP':
        # Sharded training: its hook skips the Runner's weight init (done before sharding),
        # gathers full tensors on every rank before rank 0 saves, and shards them on load.
        default_train_hooks(cfg, ('mmkd.DistillerFSDPHook',))
    if args.allow_objective_change:
        for hook in cfg.custom_hooks:
            if str(hook.get('type')).split('.')[-1] == 'RunRecordHook':
                hook['allow_objective_change'] = True
    if args.launcher != 'none' and is_distiller_config(cfg.model) and \
            cfg.get('model_wrapper_cfg') is None:
        # MMEngine's DDP wrapper, plus the distiller's nonfinite_loss='skip' policy.
        cfg.model_wrapper_cfg = dict(
            type='mmkd.DistillerDataParallel', broadcast_buffers=False,  # MMEngine's defaults
            find_unused_parameters=cfg.get('find_unused_parameters', False))
    if args.launcher != 'none':
        setup_cpu_distributed(cfg)

    if 'runner_type' in cfg:
        runner = RUNNERS.build(cfg)
    else:
        runner = Runner.from_cfg(cfg)
    runner.train()


if __name__ == '__main__':
    arguments = parse_args()
    from mmkd.utils.dist import tear_down_process_group
    with tear_down_process_group():
        main(arguments)
