"""Where attention goes: the mean student-layer x teacher-layer attention of an AFD or RTK block.

    python tools/analysis/attention_maps.py CONFIG CHECKPOINT [--block NAME] \\
        [--num-samples 256] [--split val|train] [--out DIR] [--cfg-options KEY=VALUE ...]

Builds the distiller of CONFIG as ``tools/train.py`` does (teachers from their checkpoints),
loads CHECKPOINT (a distiller's training checkpoint: the student *and* the block's attention
modules, ``methods.<block>.*``), and runs its loss path (``model.loss``) without grad, in eval
mode, over the first ``--num-samples`` samples of the split's loader: the block's method
computes its attention exactly as in training, but with its BatchNorm's running statistics
(eval mode: per-sample attention, nothing updated), no optimiser step, no state changed.
The method's public read-out (``reset_attention_stats()`` / ``attention_stats``, see
``mmkd/methods/attention_kd.py``, "Reading the attention") gives the mean over those samples.

Writes to ``--out`` (default ``work_dirs/attention_maps/<config name>``):

* ``attention.json``: the block, its method, the student points (rows, with each level's
  shape (C, H, W)) and teacher points (columns) in the block's order, ``attention`` (S x T,
  the mean over samples), ``softmax_over`` ('student': each column sums to 1, AFD; 'teacher':
  each row sums to 1, RTK), for RTK ``kept_fraction`` (S x T: the fraction of samples whose
  selection kept the pair) and ``dropped`` ([s, t] pairs kept for no sample), ``num_samples``;
  ``distance`` (S x T: each pair's mean distance, the method's ``pair_distances``, the term
  its attention weighs);
* ``attention.png``: the heatmap, rows student layers x columns teacher layers, each cell's mean
  attention written in it; RTK's pairs dropped for every sample hatched with x, and for pairs
  kept for only some samples the percentage kept written under the value; below it the same
  grid of mean pair distances.

``--block`` picks the block (default: the only block whose method exposes the attention); a
block whose method has no attention read-out is refused with the list of those that have one.
"""
import argparse
import json
import os
import os.path as osp
import sys
import textwrap

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split('\n\n', 2)[2])
    parser.add_argument('config', help='a distillation config with an AFD or RTK block')
    parser.add_argument('checkpoint', help="a distiller's checkpoint of that config (its "
                        "student.* and methods.<block>.* keys)")
    parser.add_argument('--block', default=None,
                        help='the block to read (default: the only one with attention)')
    parser.add_argument('--num-samples', type=int, default=256,
                        help='samples averaged over (default 256: every one of the 10 digits '
                             'classes about 25 times; the mean of a [0, 1] attention then has '
                             'a standard error below 1/(2*sqrt(256)) = 0.03)')
    parser.add_argument('--split', choices=['val', 'train'], default='val',
                        help="the loader: 'val' (default; the test pipeline) or 'train' (its "
                             'pipeline with augmentations; batch augmentations off)')
    parser.add_argument('--out', default=None,
                        help='output folder (default work_dirs/attention_maps/<config name>)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--cfg-options', nargs='+', default=None, metavar='KEY=VALUE',
                        help='override config keys, as in tools/train.py')
    args = parser.parse_args(argv)
    if args.num_samples < 1:
        parser.error(f'--num-samples must be >= 1, got {args.num_samples}')
    return args


# ---------------------------------------------------------------------- blocks
def has_attention_api(method) -> bool:
    """Whether a method exposes its layer attention (``reset_attention_stats`` and
    ``attention_stats``, as AFD and RTK do)."""
    return callable(getattr(method, 'reset_attention_stats', None)) and \
        hasattr(method, 'attention_stats')


def select_block(model, name=None) -> str:
    """The block to read: ``name``, or the only block with the attention read-out. A
    ValueError names the blocks that have it."""
    with_api = [n for n, b in model.blocks.items() if has_attention_api(b.method)]
    listing = (f'blocks with an attention read-out: {with_api}' if with_api else
               'no block of this config has one (AFD and RTK do)')
    if name is None:
        if len(with_api) == 1:
            return with_api[0]
        if not with_api:
            raise ValueError(f'This config has no block whose method exposes its attention; '
                             f'{listing}; blocks: '
                             f'{ {n: b.method_type for n, b in model.blocks.items()} }.')
        raise ValueError(f'Several blocks expose their attention; choose one with --block '
                         f'({listing}).')
    if name not in model.blocks:
        raise ValueError(f'--block {name!r}: no such block in this config; {listing}.')
    if not has_attention_api(model.blocks[name].method):
        raise ValueError(f'--block {name!r}: its method {model.blocks[name].method_type} has no '
                         f'attention read-out; {listing}.')
    return name


def level_labels(points, values):
    """One label per level: the point's name, with ``[j]`` when it gives several levels
    (an FPN tuple, flattened in order as the methods flatten it); and the levels' shapes
    (C, H, W). ``points``: names; ``values``: the values the method received (a list
    aligned with ``points``, or one value for a single point)."""
    from mmkd.methods.base import flatten_levels
    values = values if isinstance(values, (list, tuple)) and len(points) > 1 else [values]
    if len(values) != len(points):  # a single point giving a tuple
        values = [values]
    labels, shapes = [], []
    for point, value in zip(points, values):
        levels = flatten_levels(value)
        for j, level in enumerate(levels):
            labels.append(point if len(levels) == 1 else f'{point}[{j}]')
            shapes.append(list(level.shape[1:]))
    return labels, shapes


# ---------------------------------------------------------------------- measurement
def collect_attention(model, batches, block: str) -> dict:
    """Run ``model.loss`` on ``batches`` without grad and in eval mode, and read the block's
    mean attention. Returns the rows' and columns' labels and shapes, ``attention`` (S, T),
    ``kept_fraction`` (S, T) or None, ``distance`` (S, T): the mean over samples of each
    pair's distance (the method's ``pair_distances``: mean squared difference of the
    normalised spatial attention maps, the term the attention weighs), ``num_samples``. The
    model's modes are restored and its method stops tracking afterwards; nothing else is
    changed (no optimiser, BatchNorm statistics untouched in eval mode)."""
    import torch
    b = model.blocks[block]
    method = b.method
    seen = {}
    distance = []

    def grab(_module, args):  # the first batch's values for the labels; the pair distances
        if not seen:
            seen['student'], seen['teacher'] = args[0], args[1]
        if hasattr(method, 'pair_distances'):  # (N, T, S) -> summed over samples (S, T)
            total = method.pair_distances(args[0], args[1]).transpose(1, 2).sum(0)
            distance[:] = [total if not distance else distance[0] + total]

    handle = method.register_forward_pre_hook(grab)
    modes = {m: m.training for m in model.modules()}
    model.eval()
    method.reset_attention_stats()
    try:
        with torch.no_grad():
            for data in batches:
                model.loss(**data)
        stats = method.attention_stats
    finally:
        handle.remove()
        method.reset_attention_stats(track=False)
        for m, mode in modes.items():
            m.training = mode
    if stats is None or stats.num_samples == 0:
        raise ValueError(f'Block {block!r}: no sample reached the method (an empty loader?).')
    teachers = b.teacher_names
    t_names = [str(p) if len(teachers) == 1 else f'{t}:{p}' for t, p in b.teacher_points]
    s_labels, s_shapes = level_labels([str(p) for p in b.student_points], seen['student'])
    t_labels, t_shapes = level_labels(t_names, seen['teacher'])
    mean = stats.mean
    if tuple(mean.shape) != (len(s_labels), len(t_labels)):  # labels fall back to indices
        s_labels = [f'student {i}' for i in range(mean.shape[0])]
        t_labels = [f'teacher {j}' for j in range(mean.shape[1])]
        s_shapes = t_shapes = None
    kept = stats.kept_fraction
    return dict(block=block, method=b.method_type, softmax_over=method.softmax_over,
                student_points=s_labels, student_shapes=s_shapes,
                teacher_points=t_labels, teacher_shapes=t_shapes,
                attention=mean.tolist(),
                distance=(distance[0].cpu() / stats.num_samples).tolist() if distance else None,
                kept_fraction=None if kept is None else kept.tolist(),
                dropped=None if kept is None else
                [[s, t] for s, t in (kept == 0).nonzero().tolist()],
                num_samples=stats.num_samples)


# ---------------------------------------------------------------------- outputs
def plot(result: dict, path: str) -> None:
    """The heatmap: rows student levels, columns teacher levels, mean attention written in;
    RTK's never-kept pairs hatched x and, under the value, the share of samples that kept a
    pair kept for only some. Below it, with ``distance``, the mean pair distances."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.patches import Rectangle

    att = np.array(result['attention'])
    kept = None if result['kept_fraction'] is None else np.array(result['kept_fraction'])
    dist = None if result.get('distance') is None else np.array(result['distance'])
    rows, cols = att.shape
    panels = 1 if dist is None else 2
    width = max(7.0, 2.5 + 0.55 * cols)  # inches; titles wrapped to it (~13 chars an inch)
    fig, axes = plt.subplots(panels, 1, squeeze=False,
                             figsize=(width, (1.6 + 0.45 * rows) * panels + 1.2))
    sums = ('each column (teacher layer) sums to 1' if result['softmax_over'] == 'student'
            else 'each row (student layer) sums to 1')
    title = (f"{result['method']} block '{result['block']}': mean attention over "
             f"{result['num_samples']} samples ({sums})")
    if kept is not None:
        title += ('\nx: key dropped for every sample; % under a value: the share of samples '
                  'that kept the pair, where not all did')
    for ax, values, label, what in zip(
            axes[:, 0], (att, dist), ('mean attention', 'mean pair distance'),
            (title, 'mean distance of each pair: mean((value_s - value_t)^2) of the '
                    'normalised spatial attention maps, the term the attention weighs')):
        top = max(float(values.max()), 1e-12)
        image = ax.imshow(values, cmap='viridis', vmin=0, vmax=top, aspect='auto')
        fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02, label=label)
        for s in range(rows):
            for t in range(cols):
                text = f'{values[s, t]:.2f}' if values is att else f'{values[s, t]:.2g}'
                if values is att and kept is not None and 0 < kept[s, t] < 1:
                    text += f'\n{100 * kept[s, t]:.0f}%'
                colour = 'black' if values[s, t] > 0.6 * top else 'white'
                ax.text(t, s, text, ha='center', va='center', fontsize=6, color=colour)
                if values is att and kept is not None and kept[s, t] == 0:
                    ax.add_patch(Rectangle((t - 0.5, s - 0.5), 1, 1, fill=False, linewidth=0,
                                           hatch='xx', edgecolor='0.7'))
        ax.set_xticks(range(cols), result['teacher_points'], rotation=90, fontsize=7)
        ax.set_yticks(range(rows), result['student_points'], fontsize=7)
        ax.set_xlabel('teacher layer')
        ax.set_ylabel('student layer')
        wrapped = [textwrap.fill(line, int(13 * width)) for line in what.split('\n')]
        ax.set_title('\n'.join(wrapped), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    # After parsing, so that --help answers at once (the OpenMMLab packages take seconds).
    from mmengine.config import DictAction

    from mmkd.analysis import analysis_batches, analysis_runner
    from mmkd.utils.checkpoint import safe_torch_load

    cfg_options = None
    if args.cfg_options:
        ns = argparse.Namespace()
        DictAction(option_strings=[], dest='o')(None, ns, args.cfg_options)
        cfg_options = ns.o
    out = args.out or osp.join('work_dirs', 'attention_maps',
                               osp.splitext(osp.basename(args.config))[0])
    with analysis_runner(args.config, args.checkpoint, cfg_options, args.seed,
                         what='attention maps (an AFD or RTK block)') as runner:
        model = runner.model
        try:
            block = select_block(model, args.block)
        except ValueError as e:
            sys.exit(f'{args.config}: {e}')
        state = safe_torch_load(args.checkpoint)
        state = state.get('state_dict', state)
        if not any(k.startswith(f'methods.{block}.') for k in state):
            sys.exit(f'{args.checkpoint} has no methods.{block}.* keys: not a distiller '
                     f'checkpoint of {args.config} (a plain student checkpoint leaves the '
                     'attention modules untrained, so their attention would mean nothing).')
        loader = runner.val_dataloader if args.split == 'val' else runner.train_dataloader
        result = collect_attention(
            model, analysis_batches(loader, model, args.num_samples), block)
    result = dict(config=args.config, checkpoint=args.checkpoint, split=args.split, **result)
    os.makedirs(out, exist_ok=True)
    with open(osp.join(out, 'attention.json'), 'w') as f:
        json.dump(result, f, indent=1)
    plot(result, osp.join(out, 'attention.png'))
    print(f"{result['method']} block {block!r}: {len(result['student_points'])} student x "
          f"{len(result['teacher_points'])} teacher layers, {result['num_samples']} samples; "
          f"wrote {osp.join(out, 'attention.json')} and {osp.join(out, 'attention.png')}")


if __name__ == '__main__':
    main()
