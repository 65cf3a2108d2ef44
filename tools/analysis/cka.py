"""Representation similarity: CKA between the student's layers and its teachers' layers.

    python tools/analysis/cka.py CONFIG CHECKPOINT --out DIR
    python tools/analysis/cka.py CONFIG RUN/epoch_10.pth --out DIR --kernel rbf \\
        --student-points blocks 'backbone.layer*' --teacher-points blocks 'teacher:neck'
    python tools/analysis/cka.py CONFIG CKPT --out DIR --estimator minibatch --num-samples 5000

Builds the distiller of CONFIG as tools/train.py does (teachers from their checkpoints) with
the student's weights from CHECKPOINT (a distiller's run checkpoint or a plain student's), runs
the student and every teacher in eval mode without gradients over the first --num-samples
images of the --split loader (its pipeline as configured; the train loader shuffles with
--seed) and writes, in --out, cka.json (points, matrix, estimator, kernel, samples, config,
checkpoint) and cka.png (a heatmap: student points as rows, teacher points as columns).

Points: by default every student point and every teacher point the config's blocks record
(``'head.fc'``; teacher points as ``'NAME:module'``, ``'self:...'`` for the student's own
points a self-distillation block reads). ``--student-points`` / ``--teacher-points`` replace
them with the points given, in the blocks' syntax (``'backbone.layer4'``, ``'neck[0]'``,
``'head.fc@input'``, wildcards ``'backbone.layer*'``; a teacher point ``'NAME:module'``, the
name optional with one teacher); the word ``blocks`` stands for the default points. A point
whose value is a tuple or list (FPN levels, a backbone's out_indices) gives one row/column per
element, ``point[i]``, each flattened per sample on its own (see
:func:`mmkd.analysis.cka.point_features`).

Estimators (:mod:`mmkd.analysis.cka`): ``full`` (Kornblith et al. 2019) keeps every sample's
features and builds n x n Gram matrices, so --num-samples bounds its memory; ``minibatch``
(Nguyen et al. 2021) averages the unbiased HSIC over the loader's batches (--batch-size, at
least 4; a smaller last batch is skipped) and keeps only per-pair sums, so the features of one
batch are all it holds. Nothing is written outside --out.
"""
import argparse
import json
import os
import os.path as osp
import sys

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)

BLOCKS = 'blocks'  # the word that stands for the config's block points


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        epilog='Points use the blocks\' syntax (mmkd.recorders); "blocks" = the default ones.')
    parser.add_argument('config', help='a distillation config')
    parser.add_argument('checkpoint', help="the student's weights: a distiller's run "
                        "checkpoint (its student.* keys) or a plain student's")
    parser.add_argument('--out', required=True, help='folder for cka.json and cka.png')
    parser.add_argument('--num-samples', type=int, default=256,
                        help='images to compare on, the first of the loader (default 256: '
                        'each point\'s n x n float64 Gram is 0.5 MB, and on the digits demo '
                        'every entry was within 0.013 of all 450 val images\' (measured))')
    parser.add_argument('--batch-size', type=int, default=None,
                        help="the loader's batch size (the minibatches of --estimator "
                        "minibatch); default: the config's")
    parser.add_argument('--kernel', choices=['linear', 'rbf'], default='linear')
    parser.add_argument('--rbf-fraction', type=float, default=0.8,
                        help='RBF bandwidth as a fraction of the median distance (default 0.8, '
                        'as in Kornblith et al. 2019)')
    parser.add_argument('--estimator', choices=['full', 'minibatch'], default='full')
    parser.add_argument('--student-points', nargs='+', default=[BLOCKS], metavar='POINT')
    parser.add_argument('--teacher-points', nargs='+', default=[BLOCKS], metavar='POINT')
    parser.add_argument('--split', choices=['val', 'train'], default='val')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--cfg-options', nargs='+', default=None, metavar='KEY=VALUE',
                        help='override config settings, as in tools/train.py')
    args = parser.parse_args(argv)
    if args.num_samples < 2:
        parser.error(f'--num-samples must be >= 2 (CKA compares samples), got {args.num_samples}')
    if args.batch_size is not None and args.batch_size < 1:
        parser.error(f'--batch-size must be >= 1, got {args.batch_size}')
    if args.estimator == 'minibatch' and args.batch_size is not None and args.batch_size < 4:
        parser.error('--estimator minibatch needs --batch-size >= 4 (the unbiased HSIC divides '
                     f'by n(n-3)), got {args.batch_size}')
    if not args.rbf_fraction > 0:
        parser.error(f'--rbf-fraction must be > 0, got {args.rbf_fraction}')
    return args


def cfg_options(args) -> dict:
    from mmengine.config import DictAction
    opts = {}
    if args.cfg_options:
        action = DictAction(option_strings=['--cfg-options'], dest='cfg_options')
        ns = argparse.Namespace()
        action(None, ns, args.cfg_options)
        opts.update(ns.cfg_options)
    if args.batch_size is not None:
        opts[f'{args.split}_dataloader.batch_size'] = args.batch_size
    return opts


def block_points(model):
    """The config's points: ([student RecordPoint], [(teacher name, RecordPoint)])."""
    blocks = model.blocks.values()
    rows = [p for b in blocks if b.learner is None for p in b.student_points]
    cols = [(n, p) for b in blocks for n, p in b.teacher_points]
    return list(dict.fromkeys(rows)), list(dict.fromkeys(cols))


def _fail(option: str, spec: str, message: str):
    sys.exit(f'{option} {spec!r}: {message}')


def resolve_points(model, student_specs, teacher_specs):
    """The rows ([RecordPoint] in the student) and columns ([(teacher, RecordPoint)]) asked
    for; a bad point exits naming it and the valid choices."""
    from mmkd.distillers.teacher_kinds import SELF
    from mmkd.recorders import expand_points, find_module, parse_point
    default_rows, default_cols = block_points(model)
    teachers = list(model.teachers)  # the ones that run a forward of their own

    def expand(spec, net, desc, option, shown):
        try:
            found = expand_points(spec, net, desc)
            points = [parse_point(p) for p in (found if isinstance(found, list) else [found])]
            for p in points:
                find_module(net, p.module, desc)
        except (KeyError, ValueError, TypeError) as e:
            msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
            _fail(option, spec, f'{msg} The config\'s block points are {shown} ("{BLOCKS}").')
        return points

    shown_rows = [str(p) for p in default_rows]
    shown_cols = [f'{n}:{p}' for n, p in default_cols]
    rows = []
    for spec in student_specs:
        rows += default_rows if spec == BLOCKS else expand(
            spec, model.student, 'student', '--student-points', shown_rows)
    cols = []
    for spec in teacher_specs:
        if spec == BLOCKS:
            cols += default_cols
            continue
        if ':' in spec:
            name, rest = spec.split(':', 1)
        elif len(teachers) == 1:
            name, rest = teachers[0], spec
        else:
            _fail('--teacher-points', spec, f'say which teacher: "NAME:module"; the teachers '
                  f'are {teachers}, and {SELF} (the student itself).')
        if name not in teachers and name != SELF:
            _fail('--teacher-points', spec, f'unknown teacher {name!r}; the teachers are '
                  f'{teachers}, and {SELF} (the student itself).')
        net = model.student if name == SELF else model.teacher_info(name).model
        desc = 'student' if name == SELF else f'teacher {name!r}'
        cols += [(name, p) for p in expand(rest, net, desc, '--teacher-points', shown_cols)]
    rows, cols = list(dict.fromkeys(rows)), list(dict.fromkeys(cols))
    if not rows or not cols:
        sys.exit(f'{"No student points" if not rows else "No teacher points"} to compare: give '
                 f'{"--student-points" if not rows else "--teacher-points"}.')
    return rows, cols


def build_recorders(model, rows, cols):
    """One fresh :class:`ModuleRecorder` per model that runs: None (the student, also for
    ``self:`` columns) and each teacher named in ``cols``."""
    from mmkd.distillers.teacher_kinds import SELF
    from mmkd.recorders import ModuleRecorder
    wanted = {None: list(rows)}
    for name, p in cols:
        wanted.setdefault(None if name == SELF else name, []).append(p)
    recorders = {}
    for key, points in wanted.items():
        net = model.student if key is None else model.teacher_info(key).model
        recorders[key] = ModuleRecorder(net, points, 'student' if key is None
                                        else f'teacher {key!r}')
    return recorders


def record_batch(model, recorders, data):
    """Run the student and the teachers on one preprocessed batch (eval, no grad), each with
    its own recorder on; the teachers see their view of the batch, the student its samples
    without the teachers' privileged fields (as in training)."""
    import torch

    from mmkd.recorders import StopForward
    inputs, samples = data['inputs'], data.get('data_samples')
    with torch.no_grad():
        for key, rec in recorders.items():
            rec.start()
            try:
                if key is None:
                    model.student(inputs, model.student_samples(samples), mode='tensor')
                else:
                    t = model.teacher_info(key)
                    t.model(t.view(inputs, samples), samples, mode='tensor')
            except StopForward:
                pass
            except Exception:
                rec.enabled = False
                raise
            rec.finish()


def batch_features(recorders, rows, cols, n):
    """{label: (n, ...) tensor} of the rows and columns (tuples split: point_features), and
    the row and column labels in order."""
    from mmkd.analysis.cka import point_features
    from mmkd.distillers.teacher_kinds import SELF
    feats, row_labels, col_labels = {}, [], []
    for p in rows:
        for label, x in point_features(str(p), recorders[None].get(p), n):
            feats[label] = x
            row_labels.append(label)
    for name, p in cols:
        rec = recorders[None if name == SELF else name]
        for label, x in point_features(f'{name}:{p}', rec.get(p), n):
            feats[label] = x
            col_labels.append(label)
    return feats, row_labels, col_labels


def plot(matrix, rows, cols, title, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import numpy as np
    m = np.asarray(matrix, dtype=float)
    fig, ax = plt.subplots(figsize=(max(4.5, 0.9 * len(cols) + 3), max(3.0, 0.5 * len(rows) + 2)))
    im = ax.imshow(m, cmap='viridis', vmin=0, vmax=1, aspect='auto')
    ax.set_xticks(range(len(cols)))
    ax.set_xticklabels(cols, rotation=45, ha='right')
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(rows)
    ax.set_xlabel('teacher point')
    ax.set_ylabel('student point')
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            v = m[i, j]
            ax.text(j, i, 'nan' if np.isnan(v) else f'{v:.2f}', ha='center', va='center',
                    color='black' if v > 0.6 else 'white', fontsize=8)
    fig.colorbar(im, ax=ax, label='CKA')
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    # After parsing, so that --help answers at once (the OpenMMLab packages take seconds).
    from mmkd.analysis import analysis_batches, analysis_runner
    from mmkd.analysis.cka import CKAAccumulator

    name = osp.splitext(osp.basename(args.config))[0]
    with analysis_runner(args.config, args.checkpoint, cfg_options(args), args.seed,
                         what='CKA (its teachers)') as runner:
        model = runner.model
        model.eval()
        rows, cols = resolve_points(model, args.student_points, args.teacher_points)
        recorders = build_recorders(model, rows, cols)
        loader = runner.val_dataloader if args.split == 'val' else runner.train_dataloader
        acc = None
        try:
            for data in analysis_batches(loader, model, args.num_samples):
                n = len(data['inputs'])
                record_batch(model, recorders, data)
                feats, row_labels, col_labels = batch_features(recorders, rows, cols, n)
                if acc is None:
                    acc = CKAAccumulator(row_labels, col_labels, args.estimator, args.kernel,
                                         args.rbf_fraction,
                                         max_samples=max(args.num_samples, 2))
                acc.update(feats)
                for rec in recorders.values():
                    rec.data = {}  # release this batch's activations
        finally:
            for rec in recorders.values():
                rec.remove()
    if acc is None:
        sys.exit(f'The {args.split} loader of {args.config} gave no batch.')
    matrix = acc.compute()
    os.makedirs(args.out, exist_ok=True)
    result = dict(
        config=args.config, checkpoint=args.checkpoint, split=args.split,
        estimator=args.estimator, kernel=args.kernel,
        rbf_fraction=args.rbf_fraction if args.kernel == 'rbf' else None,
        num_samples=acc.num_samples,
        minibatches=(dict(used=acc.num_batches, skipped=acc.skipped)
                     if args.estimator == 'minibatch' else None),
        student_points=acc.rows, teacher_points=acc.cols, feature_dims=acc.dims,
        matrix=[[None if v != v else round(v, 6) for v in row] for row in matrix.tolist()])
    with open(osp.join(args.out, 'cka.json'), 'w') as f:
        json.dump(result, f, indent=1)
    kernel = args.kernel if args.kernel == 'linear' else f'rbf {args.rbf_fraction:g}'
    plot(matrix.numpy(), acc.rows, acc.cols,
         f'{name}\n{kernel} CKA ({args.estimator}, n={acc.num_samples}, {args.split})',
         osp.join(args.out, 'cka.png'))
    width = max(len(r) for r in acc.rows)
    print(f'\n{kernel} CKA, {args.estimator} estimator, {acc.num_samples} {args.split} samples')
    print(' ' * width + ' | ' + ' | '.join(acc.cols))
    for r, row in zip(acc.rows, matrix.tolist()):
        print(f'{r:<{width}} | ' + ' | '.join(f'{v:>{len(c)}.3f}' for v, c in zip(row, acc.cols)))
    print(f'Wrote {osp.join(args.out, "cka.json")} and cka.png')


if __name__ == '__main__':
    main()
