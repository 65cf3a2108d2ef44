"""Plot a run's loss curves and validation metrics to a PNG, with matplotlib alone.

    python tools/analysis/plot_curves.py work_dirs/kd_digits                  # the defaults
    python tools/analysis/plot_curves.py work_dirs/kd_digits 'distill.*' student.loss --smooth 5
    python tools/analysis/plot_curves.py work_dirs/kd_digits --x epoch --out kd.png
    python tools/analysis/plot_curves.py work_dirs/kd_digits --grad            # gradient shares

Reads ``WORK_DIR/<timestamp>/vis_data/scalars.json``, which MMEngine's ``LocalVisBackend`` (in
every OpenMMLab base runtime) appends to during training: one JSON object per line, a training
record every ``LoggerHook`` interval (``iter``, ``lr``, ``loss``, ``student.*``,
``distill.<block>.*``, ...) and a validation record after each validation (the metrics and
``step``: the epoch, or the iteration in iteration-based runs). The newest run is read, or the
one ``--run`` names (a resumed run starts a new timestamp folder). The file is read line by line;
an incomplete last line (a run still writing) is skipped.

KEYS are exact names or shell-style patterns (``'distill.fpn.*'``); a key that matches nothing
stops the tool, listing the keys the file has. Without KEYS: every training term with ``loss`` in
its name (``loss``, ``student.loss_*``, the distillation losses, which are logged already
multiplied by their block's weight and summed over levels), every other ``distill.<block>.*``
scalar (diagnostics such as DiffKD's ``gamma``; each block's loss weight,
``distill.<block>.weight``) and every validation metric. Each group gets its own panel
(losses, diagnostics, loss weights, validation), since their scales differ by orders of
magnitude. Writes ``WORK_DIR/curves.png`` (or ``--out``) and prints the keys of each panel.
Nothing else is read but the run's text log, for ``--x epoch`` (the iterations per epoch).

Gradient shares: a run with ``mmkd.GradientShareHook`` in its ``custom_hooks`` logs, every N
iterations, ``grad/<term>/norm`` (each term's gradient L2 norm on the student; the term is
``task`` or a block), ``grad/<term>/share`` (norm / sum of the terms' norms),
``grad/<block>/cos_task`` (cosine with the task's gradient) and ``grad/<term>/norm.<part>``
(per top-level part of the student). The whole-student norms, shares and cosines are among the
defaults, each kind in its own panel; ``--grad`` plots only them (``--grad`` with KEYS: KEYS
too, e.g. ``'grad/*/norm.*'`` for the per-part norms). Their curves join the measured points.
"""
import argparse
import fnmatch
import json
import math
import os
import os.path as osp
import re
from collections import defaultdict, deque

#: Scalars that place a record (the x axis), never plotted as curves.
#: ``AFTER_ITER`` is ours: on each validation record, the iteration of the training record
#: before it in the file (where the validation ran).
AFTER_ITER = '_after_iter'
POSITION_KEYS = ('iter', 'epoch', 'step', AFTER_ITER)
#: Timing and memory scalars: plotted only when asked for.
TIMING_KEYS = ('time', 'data_time', 'memory')
#: Line styles cycled with the colours, so that curves lying on each other (two blocks' equal
#: weights) stay visible.
LINE_STYLES = ('-', '--', '-.', ':')
TIMESTAMP = re.compile(r'^\d{8}_\d{6}$')
#: MMEngine's text log line of an epoch-based run: ``Epoch(train)  [3][ 10/21]``.
EPOCH_LENGTH = re.compile(r'Epoch\(train\)\s*\[\s*\d+\]\[\s*\d+/(\d+)\]')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('work_dir', metavar='WORK_DIR',
                        help='the run\'s work_dir (or one of its <timestamp> folders)')
    parser.add_argument('keys', metavar='KEYS', nargs='*',
                        help='scalars to plot: exact names or patterns such as '
                             "'distill.fpn.*' (default: every loss term, every distill.* "
                             'scalar and every validation metric)')
    parser.add_argument('--out', help='the PNG to write (default: WORK_DIR/curves.png)')
    parser.add_argument('--run', metavar='TIMESTAMP',
                        help='which run of WORK_DIR to read, e.g. 20261205_063154 (default: '
                             'the newest with a scalars.json)')
    parser.add_argument('--x', choices=('iter', 'epoch'), default='iter',
                        help='x axis of the training panels (default: iter); validation is '
                             'plotted against its own step: the epoch in epoch-based runs')
    parser.add_argument('--smooth', type=int, default=1, metavar='N',
                        help='moving average over N logged points of the training curves '
                             '(the raw curve stays, faint; default: 1, none)')
    parser.add_argument('--log-y', action='store_true',
                        help='logarithmic y axis on the losses panel (and the gradient '
                             'norms panel)')
    parser.add_argument('--grad', action='store_true',
                        help='plot the gradient shares logged by mmkd.GradientShareHook: '
                             + ', '.join(repr(p) for p in GRAD_PRESET) + ' (and KEYS, if any)')
    # Intermixed: KEYS may also follow an option (`WORK_DIR --grad 'grad/*/norm.*'`).
    args = parser.parse_intermixed_args(argv)
    if args.smooth < 1:
        parser.error(f'--smooth must be >= 1 logged points, got {args.smooth}')
    return args


def find_scalars(work_dir: str, run: str = None) -> str:
    """The scalars.json of the newest run in ``work_dir`` (timestamps sort in time order), or
    of ``run``; ``work_dir`` may also be a run folder itself."""
    if not osp.isdir(work_dir):
        raise SystemExit(f'plot_curves: WORK_DIR {work_dir!r} is not a directory.')
    if run is None and osp.isfile(osp.join(work_dir, 'vis_data', 'scalars.json')):
        return osp.join(work_dir, 'vis_data', 'scalars.json')
    runs = sorted(d for d in os.listdir(work_dir)
                  if TIMESTAMP.match(d)
                  and osp.isfile(osp.join(work_dir, d, 'vis_data', 'scalars.json')))
    if run is not None:
        if run not in runs:
            raise SystemExit(f'plot_curves: no run {run!r} with vis_data/scalars.json in '
                             f'{work_dir!r}; runs there: {runs or "none"}.')
        return osp.join(work_dir, run, 'vis_data', 'scalars.json')
    if not runs:
        raise SystemExit(
            f'plot_curves: no <timestamp>/vis_data/scalars.json in {work_dir!r}. It is written '
            "by MMEngine's LocalVisBackend: keep dict(type='LocalVisBackend') in the config's "
            'visualizer.vis_backends (docs/getting_started.md, "Loss curves").')
    return osp.join(work_dir, runs[-1], 'vis_data', 'scalars.json')


def read_scalars(path: str):
    """(training records, validation records) of a scalars.json, read one line at a time. A
    training record has ``iter``; a validation record has not. A last line that is not valid
    JSON (the run was writing it) is skipped; a bad line before the end is an error."""
    train, val = [], []
    bad = None
    with open(path, encoding='utf-8') as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            if bad is not None:
                raise SystemExit(f'plot_curves: {path}, line {bad}: not a JSON object, and not '
                                 'the last line (the file is damaged).')
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                bad = number
                continue
            if not isinstance(record, dict):
                bad = number
                continue
            if 'iter' in record:
                train.append(record)
            else:
                record[AFTER_ITER] = train[-1]['iter'] if train else 0
                val.append(record)
    if bad is not None:
        print(f'plot_curves: skipped the incomplete last line ({bad}) of {path}.')
    return train, val


def scalar_keys(records, exclude=()):
    """The keys holding numbers in any of ``records``, in first-seen order."""
    keys = {}
    for record in records:
        for key, value in record.items():
            if key not in exclude and isinstance(value, (int, float)) \
                    and not isinstance(value, bool):
                keys.setdefault(key)
    return list(keys)


#: What ``--grad`` plots: mmkd.GradientShareHook's whole-student norms, shares and cosines.
GRAD_PRESET = ('grad/*/norm', 'grad/*/share', 'grad/*/cos_task')


def is_grad_key(key: str) -> bool:
    return key.startswith('grad/')


def is_default_train_key(key: str) -> bool:
    if is_grad_key(key):  # not the per-part norms: --grad 'grad/*/norm.*' asks for them
        return any(fnmatch.fnmatchcase(key, p) for p in GRAD_PRESET)
    return 'loss' in key or key.startswith('distill.')


def select_keys(requested, train_keys, val_keys, path):
    """(training keys, validation keys) to plot: the defaults, or the names/patterns asked
    for. A request matching nothing stops the tool, listing what the file has."""
    if not requested:
        return ([k for k in train_keys if is_default_train_key(k)],
                [k for k in val_keys if k not in TIMING_KEYS])
    chosen_train, chosen_val, missing = [], [], []
    for pattern in requested:
        hit_train = fnmatch.filter(train_keys, pattern)
        hit_val = fnmatch.filter(val_keys, pattern)
        if not hit_train and not hit_val:
            missing.append(pattern)
        chosen_train += [k for k in hit_train if k not in chosen_train]
        chosen_val += [k for k in hit_val if k not in chosen_val]
    if missing:
        raise SystemExit(
            f'plot_curves: no key {", ".join(map(repr, missing))} in {path}.\n'
            f'  training keys found: {", ".join(train_keys) or "none"}\n'
            f'  validation keys found: {", ".join(val_keys) or "none"}')
    return chosen_train, chosen_val


#: The training panels, in order: scales differ by orders of magnitude between a loss, a
#: diagnostic such as DiffKD's gamma (0..1) and a weight (e.g. 50).
#: The gradient panels (mmkd.GradientShareHook): norms, shares (0..1), cosines (-1..1).
PANELS = ('losses (distillation terms as optimised: weighted, summed over levels)',
          'diagnostics and other training scalars (not optimised)',
          'loss weights (distill.<block>.weight)',
          'gradient L2 norm on the student, per term (grad/<term>/norm[.<part>])',
          'gradient share: norm / sum of the terms\' norms (grad/<term>/share)',
          'cosine with the task gradient (grad/<block>/cos_task)')


def panel_of(key: str) -> str:
    """Which training panel a key goes to."""
    if is_grad_key(key):
        last = key.rsplit('/', 1)[-1]
        if last == 'share':
            return PANELS[4]
        if last == 'cos_task':
            return PANELS[5]
        if last == 'norm' or last.startswith('norm.'):
            return PANELS[3]
        return PANELS[1]
    if key.startswith('distill.') and key.endswith('.weight'):
        return PANELS[2]
    return PANELS[0] if 'loss' in key else PANELS[1]


def iters_per_epoch(scalars_path: str):
    """The training loader's length, from the run's text log (``Epoch(train) [e][k/N]``), or
    None. Only the lines up to the first training line are read."""
    run_dir = osp.dirname(osp.dirname(scalars_path))
    log = osp.join(run_dir, osp.basename(run_dir) + '.log')
    if not osp.isfile(log):
        return None
    with open(log, encoding='utf-8', errors='replace') as f:
        for line in f:
            found = EPOCH_LENGTH.search(line)
            if found:
                return int(found.group(1))
    return None


def validation_positions(train, val) -> list:
    """Where each validation record goes on its panel's x axis. Epoch-based runs: the epoch
    (MMEngine's ``step``). Iteration-based runs: the iteration the validation followed, since
    MMEngine's ``step`` there is the epoch as well by default (``LoggerHook``'s
    ``log_metric_by_epoch=True``): 0 for every validation."""
    epoch_based = bool(train) and 'epoch' in train[0]
    return [r.get('step', i + 1) if epoch_based or not train else r[AFTER_ITER]
            for i, r in enumerate(val)]


def train_positions(train, x: str, path: str):
    """The x value of each training record: its iteration, or fractional epoch."""
    iters = [r['iter'] for r in train]
    if x == 'iter':
        return iters
    if train and 'epoch' not in train[0]:
        raise SystemExit(f'plot_curves: {path} is from an iteration-based run (its training '
                         'records have no epoch): use --x iter.')
    length = iters_per_epoch(path)
    if not length:
        raise SystemExit(f'plot_curves: --x epoch needs the iterations per epoch, read from the '
                         f'run\'s text log next to {osp.dirname(path)} ("Epoch(train) [e][k/N]"); '
                         'it is missing or has no training line: use --x iter.')
    return [i / length for i in iters]


def moving_average(values, n: int):
    """Trailing mean over up to ``n`` points (the first points average what there is)."""
    out, window = [], deque(maxlen=n)
    for v in values:
        window.append(v)
        out.append(sum(window) / len(window))
    return out


def series(records, positions, key):
    """(xs, ys) of ``key`` over the records that hold it as a finite number."""
    xs, ys = [], []
    for pos, record in zip(positions, records):
        value = record.get(key)
        if isinstance(value, (int, float)) and math.isfinite(value):
            xs.append(pos)
            ys.append(value)
    return xs, ys


def plot(panels, out: str, title: str, smooth: int = 1, log_y: bool = False) -> None:
    """``panels``: [(title, x label, [(key, xs, ys, is_training)])] -> one PNG, a row each."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no display needed
    from matplotlib.ticker import MaxNLocator
    fig = Figure(figsize=(11, 3.2 * len(panels)), layout='constrained')
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, (panel, xlabel, curves) in zip(axes, panels):
        for i, (key, xs, ys, training) in enumerate(curves):
            style = LINE_STYLES[i % len(LINE_STYLES)]
            if training and smooth > 1:
                raw, = ax.plot(xs, ys, alpha=0.25, linewidth=1, linestyle=style)
                ax.plot(xs, moving_average(ys, smooth), color=raw.get_color(), label=key,
                        linestyle=style)
            else:
                ax.plot(xs, ys, marker='o' if len(xs) < 30 else None, markersize=3, label=key,
                        linestyle=style)
        if xlabel == 'iteration' or panel == 'validation':
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(panel, fontsize='medium', loc='left')
        ax.set_xlabel(xlabel)
        ax.grid(True, alpha=0.3)
        if log_y and panel.startswith(('losses', 'gradient L2 norm')):
            ax.set_yscale('log')
        ax.legend(loc='upper left', bbox_to_anchor=(1.01, 1.0), fontsize='small')
    fig.suptitle(title, fontsize='medium')
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=100)


def main(argv=None):
    """Plot; returns {panel title: [keys]} (also printed)."""
    args = parse_args(argv)
    path = find_scalars(args.work_dir, args.run)
    train, val = read_scalars(path)
    train_keys = scalar_keys(train, exclude=POSITION_KEYS)
    val_keys = scalar_keys(val, exclude=POSITION_KEYS)
    print(f'plot_curves: {path}: {len(train)} training and {len(val)} validation records.')
    if args.grad:
        found = [k for k in train_keys if any(fnmatch.fnmatchcase(k, p) for p in GRAD_PRESET)]
        if not found:
            raise SystemExit(
                f'plot_curves: --grad: no gradient-share keys ({", ".join(GRAD_PRESET)}) in '
                f"{path}. They are logged by mmkd.GradientShareHook: add dict(type="
                f"'mmkd.GradientShareHook', interval=50) to the config's custom_hooks. "
                f'Training keys found: {", ".join(train_keys) or "none"}.')
        chosen_train, chosen_val = select_keys(found + list(args.keys),
                                               train_keys, val_keys, path) if args.keys \
            else (found, [])
    else:
        chosen_train, chosen_val = select_keys(args.keys, train_keys, val_keys, path)
    if not chosen_train and not chosen_val:
        raise SystemExit(f'plot_curves: nothing to plot in {path} (training keys: '
                         f'{", ".join(train_keys) or "none"}; validation keys: '
                         f'{", ".join(val_keys) or "none"}).')

    xs_train = train_positions(train, args.x, path) if chosen_train else []
    grouped = defaultdict(list)
    for key in chosen_train:
        grouped[panel_of(key)].append((key, *series(train, xs_train, key), True))
    xlabel = 'iteration' if args.x == 'iter' else 'epoch'
    panels = [(name, xlabel, grouped[name]) for name in PANELS if name in grouped]
    if chosen_val:
        epoch_based = bool(train) and 'epoch' in train[0]
        steps = validation_positions(train, val)
        panels.append(('validation', 'epoch' if epoch_based or not train else 'iteration',
                       [(key, *series(val, steps, key), False) for key in chosen_val]))

    out = args.out or osp.join(args.work_dir, 'curves.png')
    run = osp.basename(osp.dirname(osp.dirname(path)))
    plot(panels, out, f'{osp.basename(osp.normpath(args.work_dir))}  (run {run})',
         args.smooth, args.log_y)
    plotted = {name: [c[0] for c in curves] for name, _, curves in panels}
    for name, keys in plotted.items():
        print(f'plotted [{name}]: {", ".join(keys)}')
    print(f'wrote {out}')
    return plotted


if __name__ == '__main__':
    main()
