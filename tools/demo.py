"""The main job: distillation on the embedded demo data, on a CPU, in minutes.

    python tools/demo.py                       # all three tasks
    python tools/demo.py --tasks classification --seeds 0 1 2

For each task: make the data (digits ship inside scikit-learn; shapes are generated once into
data/shapes), train the teacher unless work_dirs/demo/<task>/teacher.pth already exists, then
train the student baseline and the distilled student with the same seeds and schedule, all
through tools/train.py. Prints one table (teacher, baseline, distilled; mean +- std over seeds)
and writes it to work_dirs/demo/results.md and results.json.
"""
import argparse
import json
import os
import os.path as osp
import re
import statistics
import subprocess
import sys
import time

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO)
DEMO = osp.join('configs', 'demo')

TASKS = {
    'classification': dict(
        folder=f'{DEMO}/digits',
        data='digits (sklearn, 1,347 train / 450 test)', metric='accuracy/top1',
        metric_name='top-1 (%)', work='work_dirs/demo/digits', split='test',
        teacher=f'{DEMO}/digits/resnet34-wide_digits.py',
        student=f'{DEMO}/digits/resnet18-tiny_digits.py',
        distill=f'{DEMO}/digits/kd_resnet34-wide_resnet18-tiny_digits.py'),
    'detection': dict(
        folder=f'{DEMO}/shapes_det',
        data='shapes (generated, 300 train / 100 val)', metric='coco/bbox_mAP',
        metric_name='bbox mAP (%)', scale=100.0, work='work_dirs/demo/shapes_det', split='val',
        teacher=f'{DEMO}/shapes_det/retinanet_r34-wide_fpn_shapes.py',
        student=f'{DEMO}/shapes_det/retinanet_r18-tiny_fpn_shapes.py',
        distill=f'{DEMO}/shapes_det/fitnet_retinanet_r34-wide_r18-tiny_fpn_shapes.py'),
    'segmentation': dict(
        folder=f'{DEMO}/shapes_seg',
        data='shapes (generated, 300 train / 100 val)', metric='mIoU',
        metric_name='mIoU (%)', work='work_dirs/demo/shapes_seg', split='val',
        teacher=f'{DEMO}/shapes_seg/deeplabv3_r34-wide-d8_shapes.py',
        student=f'{DEMO}/shapes_seg/deeplabv3_r18-tiny-d8_shapes.py',
        distill=f'{DEMO}/shapes_seg/fitnet_deeplabv3_r34-wide_r18-tiny-d8_shapes.py'),
}


def train(config, work_dir, metric, options=(), scale=1.0):
    """Run tools/train.py; return the last value of ``metric`` it logged, times ``scale``."""
    cmd = [sys.executable, 'tools/train.py', config, '--work-dir', work_dir]
    if options:
        cmd += ['--cfg-options', *options]
    os.makedirs(work_dir, exist_ok=True)
    log = osp.join(work_dir, 'demo_stdout.log')
    with open(log, 'w') as f:
        proc = subprocess.run(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT,
                              env=dict(os.environ, PYTHONWARNINGS='ignore'))
    text = open(log).read()
    if proc.returncode != 0:
        sys.exit(f'Training failed ({" ".join(cmd)}); see {log}:\n{text[-3000:]}')
    found = re.findall(rf'{re.escape(metric)}: (-?[0-9.]+)', text)
    if not found:
        sys.exit(f'No {metric} in the log of {config}; see {log}')
    return float(found[-1]) * scale


def ensure_teacher(task, spec, retrain, work_root=None, options=()):
    """Train the teacher once; keep its weights and score in ``<work>/teacher.pth|json``
    (by default the path the demo distillation configs name). Returns (score, checkpoint)."""
    work_root = work_root or spec['work']
    ckpt = osp.join(REPO, work_root, 'teacher.pth')
    info = osp.join(REPO, work_root, 'teacher.json')
    if osp.isfile(ckpt) and osp.isfile(info) and not retrain:
        score = json.load(open(info))['score']
        print(f'[{task}] reusing teacher {osp.relpath(ckpt, REPO)} ({spec["metric"]} {score})')
        return score, ckpt
    work = osp.join(work_root, 'teacher')
    print(f'[{task}] training the teacher ({spec["teacher"]}) ...', flush=True)
    score = train(spec['teacher'], work, spec['metric'], ['randomness.seed=0', *options],
                  spec.get('scale', 1.0))
    with open(osp.join(REPO, work, 'last_checkpoint')) as f:
        last = f.read().strip()
    import torch

    from mmkd.utils.checkpoint import safe_torch_load
    state = safe_torch_load(last)['state_dict']
    torch.save(dict(state_dict=state, meta=dict(config=spec['teacher'])), ckpt)
    json.dump(dict(score=score, config=spec['teacher']), open(info, 'w'))
    return score, ckpt


def fmt(values):
    if len(values) == 1:
        return f'{values[0]:.2f}'
    return f'{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}'


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--tasks', nargs='+', choices=list(TASKS), default=list(TASKS))
    parser.add_argument('--seeds', nargs='+', type=int, default=None,
                        help='seeds for student runs (default: 0 1 2 for classification, '
                        '0 for detection and segmentation)')
    parser.add_argument('--retrain-teachers', action='store_true')
    args = parser.parse_args()
    start = time.time()

    if {'detection', 'segmentation'} & set(args.tasks):
        from mmkd.datasets import make_shapes_dataset
        info = make_shapes_dataset(osp.join(REPO, 'data', 'shapes'))
        print(('generated' if info['generated'] else 'reusing') + ' data/shapes')

    rows = []
    for task in args.tasks:
        spec = TASKS[task]
        seeds = args.seeds or ([0, 1, 2] if task == 'classification' else [0])
        teacher, _ = ensure_teacher(task, spec, args.retrain_teachers)
        base, dist = [], []
        for seed in seeds:
            print(f'[{task}] seed {seed}: student baseline ...', flush=True)
            base.append(train(spec['student'], f'{spec["work"]}/student_seed{seed}',
                              spec['metric'], [f'randomness.seed={seed}'],
                              spec.get('scale', 1.0)))
            print(f'[{task}] seed {seed}: distilled student ...', flush=True)
            dist.append(train(spec['distill'], f'{spec["work"]}/distill_seed{seed}',
                              spec['metric'], [f'randomness.seed={seed}'],
                              spec.get('scale', 1.0)))
        gain = statistics.mean(dist) - statistics.mean(base)
        wins = sum(d > b for d, b in zip(dist, base))
        verdict = (f'gain {gain:+.2f} (better on {wins}/{len(seeds)} seeds)' if gain > 0 else
                   f'no gain ({gain:+.2f}; better on {wins}/{len(seeds)} seeds)')
        rows.append(dict(task=task, data=spec['data'], metric=spec['metric_name'],
                         teacher=teacher, baseline=base, distilled=dist, seeds=seeds,
                         method=osp.basename(spec['distill']), verdict=verdict))

    lines = ['| task | data | metric | teacher | student baseline | distilled student | '
             'seeds | result |', '|---|---|---|---|---|---|---|---|']
    for r in rows:
        lines.append(f'| {r["task"]} ({r["method"]}) | {r["data"]} | {r["metric"]} | '
                     f'{r["teacher"]:.2f} | {fmt(r["baseline"])} | {fmt(r["distilled"])} | '
                     f'{len(r["seeds"])} | {r["verdict"]} |')
    table = '\n'.join(lines)
    out = osp.join(REPO, 'work_dirs', 'demo')
    os.makedirs(out, exist_ok=True)
    open(osp.join(out, 'results.md'), 'w').write(table + '\n')
    json.dump(rows, open(osp.join(out, 'results.json'), 'w'), indent=1)
    print('\n' + table)
    print(f'\n(total {time.time() - start:.0f} s; logs and checkpoints under work_dirs/demo/)')


if __name__ == '__main__':
    main()
