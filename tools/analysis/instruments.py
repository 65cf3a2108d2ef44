"""The instruments over a quality grid: teacher-student agreement (and gradient shares) per run.

    python tools/benchmark/quality.py --tasks classification --methods kd dkd --seeds 0 1 2 \\
        --work-dir work_dirs/grid                       # trains the runs (see quality.py)
    python tools/analysis/instruments.py work_dirs/grid --task classification \\
        --methods student kd dkd --seeds 0 1 2 --grad-shares --out docs/analysis/digits

For every ``<method>_seed<seed>`` run that ``tools/benchmark/quality.py`` (or ``tools/demo.py``)
left under ``WORK_ROOT/<task folder>/``, evaluates its last checkpoint on the task's reported
split with ``tools/test.py``, the task's own metric and :class:`mmkd.TeacherStudentAgreement`
beside it: a distilled run is compared with its own teachers (``model.val_teachers``, the
teacher checkpoints its run used); the plain student (``student``) with the task's teacher
(``--teacher-checkpoint``, default the demo's). With ``--grad-shares`` it also measures each
distillation block's gradient against the task's at the final weights
(``tools/analysis/grad_shares.py``). Writes ``instruments.json`` (every run's numbers) and
``instruments.md`` (mean ± std over seeds per method, and the Spearman rank correlation over
runs between the task score and each agreement measure) to ``--out``; prints the table.
"""
import argparse
import glob
import json
import os
import os.path as osp
import subprocess
import sys
import tempfile

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(REPO, 'tools'))
sys.path.insert(0, REPO)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('work_root', help='the --work-dir of the quality grid')
    parser.add_argument('--task', required=True,
                        choices=['classification', 'detection', 'segmentation', 'detection-pt',
                                 'segmentation-pt'])
    parser.add_argument('--methods', nargs='+', required=True,
                        help='run names (config prefixes; "student" for the baseline)')
    parser.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2])
    parser.add_argument('--teacher-checkpoint', default=None,
                        help="the task teacher's checkpoint the plain student is compared with "
                             "(default: the demo's, <task work dir>/teacher.pth)")
    parser.add_argument('--grad-shares', action='store_true',
                        help='also measure gradient shares at the final weights (distilled runs)')
    parser.add_argument('--batches', type=int, default=8, help='batches for --grad-shares')
    parser.add_argument('--grad-seeds', nargs='+', type=int, default=None,
                        help='measure the gradient shares on these seeds only (default: all)')
    parser.add_argument('--out', required=True, help='folder for instruments.json / .md')
    parser.add_argument('--threads', type=int, default=1, help='torch threads per tool run')
    parser.add_argument('--table-only', action='store_true',
                        help='remake instruments.md from the instruments.json in --out')
    return parser.parse_args(argv)


def run_dir(work_root, task, method, seed):
    from demo import TASKS
    return osp.join(work_root, osp.basename(TASKS[task]['work']), f'{method}_seed{seed}')


def run_files(path):
    """(the config MMEngine dumped for the run, its last checkpoint)."""
    configs = sorted(glob.glob(osp.join(path, '*.py')))
    if len(configs) != 1:
        sys.exit(f'{path}: expected the one config the run dumped, found {configs}')
    with open(osp.join(path, 'last_checkpoint')) as f:
        checkpoint = f.read(4096).strip()  # one path (MMEngine writes nothing else there)
    if not osp.isabs(checkpoint) and not osp.exists(checkpoint):
        checkpoint = osp.join(path, osp.basename(checkpoint))
    if not osp.isfile(checkpoint):
        sys.exit(f'{path}/last_checkpoint names {checkpoint!r:.300}, which is not a file')
    return configs[0], checkpoint


def _environment(threads):
    return dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
                PYTHONPATH=REPO + os.pathsep + os.environ.get('PYTHONPATH', ''))


def evaluate(config, checkpoint, task, teacher, threads):
    """The run's test metrics with the agreement metric beside the task's (a dict)."""
    from mmengine.config import Config

    from mmkd.utils.tool_config import is_distiller_config
    cfg = Config.fromfile(config)
    evaluators = cfg.test_evaluator
    evaluators = list(evaluators) if isinstance(evaluators, (list, tuple)) else [evaluators]
    agreement = dict(type='mmkd.TeacherStudentAgreement')
    if is_distiller_config(cfg.model):
        cfg.model.val_teachers = True
    else:
        from demo import TASKS
        agreement['teachers'] = dict(teacher=dict(config=TASKS[task]['teacher'],
                                                  checkpoint=teacher))
    cfg.test_evaluator = evaluators + [agreement]
    with tempfile.TemporaryDirectory() as tmp:
        path = osp.join(tmp, osp.basename(config))
        cfg.dump(path)
        cmd = [sys.executable, osp.join(REPO, 'tools', 'test.py'), path, checkpoint,
               '--work-dir', osp.join(tmp, 'work')]
        proc = subprocess.run(cmd, cwd=REPO, env=_environment(threads), capture_output=True,
                              text=True)
        if proc.returncode:
            sys.exit(f'{" ".join(cmd)} failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}')
        logs = glob.glob(osp.join(tmp, 'work', '*', '*.json'))
        if len(logs) != 1:
            sys.exit(f'{" ".join(cmd)}: expected one metrics JSON, found {logs}')
        with open(logs[0]) as f:
            lines = [json.loads(line) for line in f if line.strip()]
    return {k: v for line in lines for k, v in line.items() if isinstance(v, (int, float))}


def grad_shares(config, checkpoint, batches, threads):
    with tempfile.TemporaryDirectory() as tmp:
        out = osp.join(tmp, 'shares.json')
        cmd = [sys.executable, osp.join(REPO, 'tools', 'analysis', 'grad_shares.py'), config,
               '--student-checkpoint', checkpoint, '--batches', str(batches), '--out', out]
        proc = subprocess.run(cmd, cwd=REPO, env=_environment(threads), capture_output=True,
                              text=True)
        if proc.returncode:
            sys.exit(f'{" ".join(cmd)} failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}')
        with open(out) as f:
            terms = json.load(f)['terms']
    task = terms.get('task', {}).get('norm', {}).get('all')
    shares = {}
    for term, row in terms.items():
        if term == 'task':
            continue
        shares[f'{term}/cos_task'] = row['cos_task']
        if row.get('share') is not None:
            shares[f'{term}/share'] = row['share']
        if task:
            shares[f'{term}/norm_over_task'] = row['norm']['all'] / task
    return shares


def spearman(xs, ys):
    from scipy.stats import spearmanr
    if len(xs) < 3 or len(set(xs)) < 2 or len(set(ys)) < 2:
        return None
    return float(spearmanr(xs, ys).statistic)


def _cell(values, digits=3):
    from demo import mean_std
    if not values:
        return '—'
    m, s = mean_std(values)
    return f'{m:.{digits}f} ± {s:.{digits}f}'


def table(runs, task):
    """Markdown: per method, mean ± std over seeds of the task score, every agreement measure
    and each block's gradient share and cosine with the task; then the Spearman rank
    correlation between the task score and each agreement measure, over all runs and over the
    distilled runs only (the plain student left out)."""
    from demo import TASKS
    metric = TASKS[task]['metric']
    scale = TASKS[task].get('scale', 1.0)
    keys = sorted({k for r in runs for k in r['values'] if k.startswith('agreement/')
                   and k != 'agreement/student_acc'})  # (the task score again)
    blocks = sorted({k.split('/')[1] for r in runs for k in r['values']
                     if k.startswith('grad/')})
    head = ['method', 'seeds', TASKS[task]['metric_name']] + [
        k.split('/', 1)[1] for k in keys]  # 'agreement/teacher/kl' -> 'teacher/kl'
    if blocks:
        head.append('gradient at the end: block share, cos with task')
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for method in dict.fromkeys(r['method'] for r in runs):
        rows = [r for r in runs if r['method'] == method]
        cells = [method, str(len(rows)),
                 _cell([r['values'][metric] * scale for r in rows if metric in r['values']], 2)]
        cells += [_cell([r['values'][k] for r in rows if r['values'].get(k) is not None])
                  for k in keys]
        if blocks:
            parts = []
            for block in blocks:
                share = [r['values'][f'grad/{block}/share'] for r in rows
                         if r['values'].get(f'grad/{block}/share') is not None]
                cos = [r['values'][f'grad/{block}/cos_task'] for r in rows
                       if r['values'].get(f'grad/{block}/cos_task') is not None]
                if share:
                    parts.append(f'`{block.replace("distill.", "")}` '
                                 f'{sum(share) / len(share):.2f}, {sum(cos) / len(cos):+.2f}')
            cells.append('; '.join(parts) or '—')
        lines.append('| ' + ' | '.join(cells) + ' |')
    lines += ['', f'Spearman rank correlation between {TASKS[task]["metric_name"]} and each '
              'measure: over all runs / over the distilled runs only:', '']
    for key in keys:
        if key.endswith(('teacher_acc', 'teacher_ece', 'teacher_dece')):
            continue  # the teacher's own: one value per teacher, not per run
        rhos = []
        for chosen in (runs, [r for r in runs if r['method'] != 'student']):
            pairs = [(r['values'][metric], r['values'][key]) for r in chosen
                     if r['values'].get(key) is not None and metric in r['values']]
            rho = spearman([p[0] for p in pairs], [p[1] for p in pairs])
            rhos.append('n/a' if rho is None else f'{rho:+.2f} ({len(pairs)} runs)')
        lines.append(f'- `{key}`: {rhos[0]} / {rhos[1]}')
    return '\n'.join(lines)


def main(argv=None):
    args = parse_args(argv)
    if args.table_only:
        with open(osp.join(args.out, 'instruments.json')) as f:
            runs = json.load(f)['runs']
        text = table(runs, args.task)
        with open(osp.join(args.out, 'instruments.md'), 'w') as f:
            f.write(text + '\n')
        print(text)
        return
    from demo import TASKS
    teacher = args.teacher_checkpoint or osp.join(TASKS[args.task]['work'], 'teacher.pth')
    runs = []
    for method in args.methods:
        for seed in args.seeds:
            path = run_dir(args.work_root, args.task, method, seed)
            if not osp.isdir(path):
                sys.exit(f'{path}: no such run (methods and seeds must name finished runs of '
                         f'{args.work_root})')
            config, checkpoint = run_files(path)
            values = evaluate(config, checkpoint, args.task, teacher, args.threads)
            if args.grad_shares and method != 'student' and (
                    args.grad_seeds is None or seed in args.grad_seeds):
                values.update({f'grad/{k}': v for k, v in
                               grad_shares(config, checkpoint, args.batches,
                                           args.threads).items()})
            runs.append(dict(method=method, seed=seed, run=path, values=values))
            print(f'{method} seed {seed}: ' + ', '.join(
                f'{k}={v:.4g}' for k, v in values.items() if not k.startswith('grad/')),
                flush=True)
    os.makedirs(args.out, exist_ok=True)
    text = table(runs, args.task)
    with open(osp.join(args.out, 'instruments.json'), 'w') as f:
        json.dump(dict(task=args.task, work_root=args.work_root, runs=runs), f, indent=1)
    with open(osp.join(args.out, 'instruments.md'), 'w') as f:
        f.write(text + '\n')
    print(text)


if __name__ == '__main__':
    main()
