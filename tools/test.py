"""Evaluate a trained model with the config's test dataloader and evaluator.

    python tools/test.py CONFIG CHECKPOINT            # a distiller's student (the default)
    python tools/test.py CONFIG --teacher             # the teacher alone, from its checkpoint
    python tools/test.py CONFIG --teacher det         # one of several teachers, by name
    python tools/test.py CONFIG CHECKPOINT --teacher peer   # a trainable teacher, from the run
    python tools/test.py BASE_CONFIG student.pth      # an exported student in its plain config
    python tools/test.py CONFIG CHECKPOINT --out preds.pkl   # also dump every prediction
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

# Only what parsing needs (no torch): --help and usage errors answer at once; the Runner, torch
# and the OpenMMLab packages (seconds to import) come in main(), after the arguments.
from mmengine.config import DictAction  # noqa: E402


def parse_args():
    parser = argparse.ArgumentParser(description='Test a model (mmkd)')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', nargs='?', help='checkpoint file (not needed with '
                        '--teacher)')
    parser.add_argument('--teacher', nargs='?', const=True, default=None, metavar='NAME',
                        help='evaluate the distiller\'s teacher alone (weights from its own '
                        'checkpoint, fed as in distillation) instead of the student; with '
                        'several teachers, give its name; a trainable teacher (trained in the '
                        'run) is loaded from CHECKPOINT')
    parser.add_argument('--work-dir', help='the dir to save logs and results')
    parser.add_argument('--out', help='dump every prediction (the data samples the model '
                        'returns) to this pickle file (MMEngine\'s DumpResults)')
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


def check_teacher_to_test(cfg, config, name, checkpoint=None):
    """``--teacher [NAME]``: the teacher to evaluate with this config's test data and
    evaluator. A teacher of another task (another package scope) is refused: its own config
    has the data and metric that fit it."""
    from mmkd.distillers import load_model_config
    from mmkd.utils import is_distiller_config
    model = cfg.model
    if not is_distiller_config(model) or not (model.get('teacher') or model.get('teachers')):
        raise SystemExit(f'--teacher: {config} has no model.teacher(s) (not a distillation '
                         'config).')
    teachers = dict(model.teachers) if model.get('teachers') else dict(teacher=model.teacher)
    teachers.pop('self', None)  # the student itself
    if name is True:
        if len(teachers) > 1:
            raise SystemExit(f'--teacher: {config} has several teachers; name one: '
                             f'--teacher {{{",".join(teachers)}}}.')
        name = next(iter(teachers))
    if name not in teachers:
        raise SystemExit(f'--teacher {name}: no such teacher in {config}; the teachers are '
                         f'{list(teachers)}.')
    teacher = teachers[name]
    if teacher.get('trainable') and not checkpoint:
        raise SystemExit(f'--teacher {name}: this teacher is trained in the run '
                         '(trainable=True): give the run\'s CHECKPOINT, which holds its '
                         'weights.')
    source = teacher.get('config') or teacher.get('model')
    if isinstance(source, str) and '::' not in source:
        source = os.path.normpath(source)
    scope = teacher.get('scope') or load_model_config(source)[1]
    student_scope = model.get('student_scope') or cfg.get('default_scope')
    if scope and student_scope and scope != student_scope:
        where = f'tools/test.py {source} {teacher.checkpoint}' if teacher.get('config') else \
            "its own config"
        raise SystemExit(f'--teacher {name}: this teacher is a {scope} model and {config} tests '
                         f'a {student_scope} student with {student_scope} data and metrics. '
                         f'Evaluate the teacher with {where}.')
    return name if model.get('teachers') else True


def main(args=None):
    args = args or parse_args()
    from mmengine.runner import Runner

    import mmkd  # noqa: F401  (registers modules, safe checkpoint loading)
    from mmkd.utils import (LoadTestCheckpointHook, cached_teachers, load_tool_config,
                            setup_cpu_distributed)

    cfg = load_tool_config(args.config, args.launcher, args.cfg_options, args.work_dir)
    for teacher in cached_teachers(cfg.model).values():
        # Testing reads no teacher values: a teacher cache (training's) need not be here;
        # the teacher is built from its config and checkpoint, as without a cache.
        teacher.pop('cache')

    if args.teacher:
        cfg.model.eval_teacher = check_teacher_to_test(cfg, args.config, args.teacher,
                                                       args.checkpoint)
    # The checkpoint is loaded below, not by the Runner (which would load any key mismatch
    # non-strictly and score random weights); the teacher loads its own checkpoint.
    cfg.load_from = None
    if args.launcher != 'none':
        setup_cpu_distributed(cfg)
    if args.out:
        if not args.out.endswith(('.pkl', '.pickle')):
            raise SystemExit(f'--out {args.out}: the file must end with .pkl or .pickle.')
        evaluators = cfg.test_evaluator
        evaluators = list(evaluators) if isinstance(evaluators, (list, tuple)) else [evaluators]
        cfg.test_evaluator = [*evaluators, dict(type='DumpResults', out_file_path=args.out)]

    runner = Runner.from_cfg(cfg)
    if args.checkpoint:  # (a frozen teacher under test loads its own and needs none)
        # Where the Runner would load it: after every other hook's before_run.
        runner.register_hook(LoadTestCheckpointHook(args.checkpoint), priority='LOWEST')
    runner.test()


if __name__ == '__main__':
    arguments = parse_args()
    from mmkd.utils.dist import tear_down_process_group
    with tear_down_process_group():
        main(arguments)
