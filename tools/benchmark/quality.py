"""Quality grid: every distillation method x task x seed on the demo data.

    python tools/benchmark/quality.py                           # all tasks, all methods, 3 seeds
    python tools/benchmark/quality.py --tasks classification --seeds 0 1 2 3 4
    python tools/benchmark/quality.py --methods kd --cfg-options train_cfg.max_epochs=1
    python tools/benchmark/quality.py --tasks detection-pt segmentation-pt --seeds 0 1 2 3 4 \
        --methods diffkd vkd rtk fitnet cwd     # the pretrained-backbone variant of the shapes
    python tools/benchmark/quality.py --tune --tasks detection --methods rtk \
        --variant w5 model.blocks.stages.loss_weight=5 --variant w15 model.blocks.stages.loss_weight=15

Methods plug in by config: every config in ``configs/demo/<task>/`` whose model, after
inheritance, is an mmkd distiller with blocks is one grid column (the folder's shared
``_base_distill.py`` is not), named by its file-name prefix (``kd_...`` -> ``kd``). Each task's
teacher is trained once (or reused, see tools/demo.py); the student baseline and each distilled
student are trained with the same seeds and schedule through tools/train.py. A config whose
student is not the task's names its own baseline in ``student_baseline`` (the ViTs of the
inductive-bias tokens); its row is compared with that one and says so (``ibt (vs ...)``).
Writes a markdown table (mean and standard deviation over seeds, gain, and gap closed =
(distilled - student) / (teacher - student)), a JSON file with every run, and a PNG bar chart.

The pretrained-backbone variants of the shapes tasks (``detection-pt``, ``segmentation-pt``;
not in the default ``--tasks``) first pretrain each tiny backbone on a shapes classification
task (``configs/demo/shapes_pretrain``), once, kept and fingerprinted like the teachers (in
``work_dirs/demo/shapes_pretrain``, or ``<teacher-work-dir>/shapes_pretrain``); their teachers
and students start from those backbones. ``--cfg-options`` apply to the pretrainings too.

Hyperparameters of the demo configs are chosen with ``--tune``: every run (teachers included,
kept apart in ``<work-dir>/teachers``) trains without the tuning split and is scored on it
(digits: ``tune_fraction=0.2`` of the training images; shapes: the generated ``tune`` split;
synthetic IQA: 3 of the 12 training photos, ``tune_fraction=0.25``), so the reported splits
(digits and IQA ``test``, shapes ``val``) never take part in a choice.
"""
import argparse
import json
import os
import os.path as osp
import sys
import time

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(REPO, 'tools'))
sys.path.insert(0, REPO)

from demo import (SHAPES_TASKS, TASKS, RunFailed, add_run_arguments, mean_std,  # noqa: E402
                  run_grid, start_run_server, summarise)


#: --cfg-options that move a task's runs onto its tuning split (see the module docstring).
TUNE_OPTIONS = {
    'classification': [
        'train_dataloader.dataset.tune_fraction=0.2',
        'val_dataloader.dataset.tune_fraction=0.2', 'val_dataloader.dataset.split=tune',
        'test_dataloader.dataset.tune_fraction=0.2', 'test_dataloader.dataset.split=tune'],
    'detection': [
        f'{loader}.dataset.{key}' for loader in ('val_dataloader', 'test_dataloader')
        for key in ('ann_file=annotations/instances_tune.json', 'data_prefix.img=images/tune/')
    ] + [f'{evaluator}.ann_file=data/shapes/annotations/instances_tune.json'
         for evaluator in ('val_evaluator', 'test_evaluator')],
    'segmentation': [
        f'{loader}.dataset.data_prefix.{key}' for loader in ('val_dataloader', 'test_dataloader')
        for key in ('img_path=images/tune', 'seg_map_path=seg_maps/tune')],
    # 3 of the 12 training photos (the configs report with tune_fraction 0: all 12).
    'iqa': [f'{loader}.dataset.tune_fraction=0.25'
            for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')] + [
        f'{loader}.dataset.split=tune' for loader in ('val_dataloader', 'test_dataloader')],
}
# The pretrained-backbone variants read the same data (their pretraining has its own, with no
# tuning split to take out: see mmkd/datasets/shapes_cls.py).
TUNE_OPTIONS['detection-pt'] = TUNE_OPTIONS['detection']
TUNE_OPTIONS['segmentation-pt'] = TUNE_OPTIONS['segmentation']


def plot(rows, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    tasks = list(dict.fromkeys(r['task'] for r in rows))
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.5 * len(tasks), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        task_rows = [r for r in rows if r['task'] == task]
        names = ['student'] + [r['method'] for r in task_rows] + ['teacher']
        stats = [mean_std(task_rows[0]['student'])] + \
                [mean_std(r['distilled']) for r in task_rows] + [(task_rows[0]['teacher'], 0)]
        colours = ['#9e9e9e'] + ['#1f77b4'] * len(task_rows) + ['#2ca02c']
        ax.bar(names, [m for m, _ in stats], yerr=[s for _, s in stats], color=colours,
               capsize=4)
        low = min(m - s for m, s in stats)
        high = max(m + s for m, s in stats)
        ax.set_ylim(max(0, low - 0.15 * (high - low + 1e-6)), high + 0.1 * (high - low + 1e-6))
        ax.set_title(f'{task} ({task_rows[0]["metric"]})')
        ax.tick_params(axis='x', rotation=30)
    fig.suptitle(f'mmkd demo quality grid (mean ± std over {len(rows[0]["seeds"])} seeds)')
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    add_run_arguments(parser, seeds=[0, 1, 2])
    parser.add_argument('--methods', nargs='+', help='method names (config prefixes) to run')
    parser.add_argument('--work-dir', default='work_dirs/benchmark/quality',
                        help='root for runs (the teachers of tools/demo.py are reused)')
    parser.add_argument('--teacher-work-dir', default=None,
                        help='where teachers live/are trained (default: the demo\'s)')
    parser.add_argument('--cfg-options', nargs='+', default=[],
                        help='key=value overrides passed to every run (e.g. a tiny setting)')
    parser.add_argument('--out', default=None,
                        help='folder for quality.md, quality.json and quality.png (default: '
                        'work_dirs/benchmark/quality, or .../quality_tune with --tune)')
    parser.add_argument('--variant', nargs='+', action='append', default=[],
                        metavar='NAME KEY=VALUE',
                        help='run each method again with these --cfg-options on its '
                        'distillation runs only, as row "method[NAME]" (repeatable: a weight '
                        'sweep, a control with other record points)')
    parser.add_argument('--tune', action='store_true',
                        help='train without the tuning split and score on it (choose '
                        'hyperparameters this way; never on the reported split)')
    args = parser.parse_args()
    if args.tune:
        args.work_dir = args.work_dir.rstrip('/') + '_tune'
        args.teacher_work_dir = args.teacher_work_dir or osp.join(args.work_dir, 'teachers')
    args.out = args.out or ('work_dirs/benchmark/quality_tune' if args.tune
                            else 'work_dirs/benchmark/quality')
    start = time.time()
    start_run_server(args.threads)  # first: its imports overlap ours and the data generation

    if set(SHAPES_TASKS) & set(args.tasks):
        from mmkd.datasets import make_shapes_dataset
        make_shapes_dataset(osp.join(REPO, 'data', 'shapes'))
    variants = {name: extra for name, *extra in args.variant}
    if variants and len(variants) != len(args.variant):
        sys.exit('--variant names must differ')
    # Every task's: a method may read a teacher of another task (trained with its own options).
    options = {task: [*(TUNE_OPTIONS[task] if args.tune else []), *args.cfg_options]
               for task in TASKS}
    options['pretrain'] = list(args.cfg_options)  # the variants' backbone pretrainings
    try:
        rows = run_grid(args.tasks, args.methods, args.seeds, args.work_dir,
                        args.teacher_work_dir, options, jobs=args.jobs, threads=args.threads,
                        split='tune' if args.tune else None, variants=variants)
    except (RunFailed, ValueError) as e:
        sys.exit(str(e))
    if not rows:
        sys.exit('No distillation config matched --tasks/--methods.')

    out = osp.join(REPO, args.out)
    os.makedirs(out, exist_ok=True)
    table = summarise(rows)
    with open(osp.join(out, 'quality.md'), 'w') as f:
        f.write(table + '\n')
    with open(osp.join(out, 'quality.json'), 'w') as f:
        json.dump(dict(rows=rows, cfg_options=args.cfg_options, tune=args.tune, jobs=args.jobs,
                       threads=args.threads), f, indent=1)
    plot(rows, osp.join(out, 'quality.png'))
    print('\n' + table)
    print(f'\nwrote {args.out}/quality.md, quality.json, quality.png '
          f'({time.time() - start:.0f} s)')


if __name__ == '__main__':
    main()
