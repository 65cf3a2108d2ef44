"""What the file checks on every checkpoint load cost, next to the load itself.

    python tools/benchmark/checkpoint_checks.py                  # demo teachers + 100 MB
    python tools/benchmark/checkpoint_checks.py --synthetic-mb 100 500 --repeats 7
    python tools/benchmark/checkpoint_checks.py --checkpoint work_dirs/x/epoch_12.pth

Before torch reads a local checkpoint, mmkd checks the file (:mod:`mmkd.utils.checkpoint_file`):
a regular file, a complete zip archive with plausible declared sizes (the central directory
only), then every record's CRC-32 (the whole file read once more). For each checkpoint this
times, in one process and interleaved round by round:

- ``structure``: the checks without the CRC (``MMKD_CHECKPOINT_VERIFY_CRC=0`` leaves this);
- ``crc``: the checks with the CRC (the default);
- ``load``: ``torch.load(weights_only=True)`` alone, what loading costs without any check;

and reports medians and ``crc / load``. The file is read once before timing, so every phase
reads from the page cache, as the second read of a real load does (the CRC pass reads it
first; torch then finds it cached); a cold first read costs the disk's time for either.

The checkpoints: each demo teacher's config built with random weights and saved as a Runner
checkpoint would hold it (weights plus an SGD momentum buffer per parameter, the optimizer
state a resume loads), and synthetic state dicts of ``--synthetic-mb`` megabytes of float32.
"""
import argparse
import os
import os.path as osp
import statistics
import sys
import tempfile
import time

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)

DEMO_TEACHERS = ('configs/demo/digits/resnet34-wide_digits.py',
                 'configs/demo/shapes_det/retinanet_r34-wide_fpn_shapes.py',
                 'configs/demo/shapes_det/gfl_r34-wide_fpn_shapes.py',
                 'configs/demo/shapes_seg/deeplabv3_r34-wide-d8_shapes.py',
                 'configs/demo/iqa/nar-resnet18-tiny_synthetic-iqa.py')


def runner_like_checkpoint(config: str, path: str) -> str:
    """The model of ``config`` with random weights, saved with a momentum buffer per
    parameter (as an SGD optimizer state), under the keys a Runner checkpoint has."""
    import torch

    from mmkd.distillers import build_model_in_scope, load_model_config, without_pretrained
    torch.manual_seed(0)
    cfg, scope = load_model_config(osp.join(REPO, config))
    model = build_model_in_scope(without_pretrained(cfg), scope)
    state = model.state_dict()
    momentum = {i: dict(momentum_buffer=torch.randn_like(p))
                for i, p in enumerate(model.parameters())}
    torch.save(dict(meta=dict(epoch=1), state_dict=state, message_hub={},
                    optimizer=dict(state=momentum, param_groups=[])), path)
    return path


def synthetic_checkpoint(megabytes: float, path: str) -> str:
    import torch
    torch.manual_seed(0)
    numel = int(megabytes * 1e6 / 4)
    chunk = 1 << 22
    state = {f'layer{i}.weight': torch.randn(min(chunk, numel - i * chunk))
             for i in range((numel + chunk - 1) // chunk)}
    torch.save(dict(state_dict=state), path)
    return path


def time_phases(path: str, repeats: int) -> dict:
    import torch

    from mmkd.utils.checkpoint_file import archive_problem, file_problem
    phases = dict(
        structure=lambda: (file_problem(path), archive_problem(path, verify_crc=False)),
        crc=lambda: (file_problem(path), archive_problem(path, verify_crc=True)),
        load=lambda: torch.load(path, map_location='cpu', weights_only=True))
    with open(path, 'rb') as f:  # into the page cache
        while f.read(1 << 24):
            pass
    times = {name: [] for name in phases}
    for r in range(repeats + 1):
        for name, fn in (phases.items() if r % 2 else reversed(phases.items())):
            start = time.perf_counter()
            found = fn()
            elapsed = time.perf_counter() - start
            if name != 'load' and found[1] is not None:
                raise RuntimeError(f'{path}: {found[1]}')
            if r:  # the first round warms up
                times[name].append(elapsed)
    return {name: statistics.median(t) for name, t in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--checkpoint', nargs='+', default=[],
                        help='also time these checkpoint files')
    parser.add_argument('--synthetic-mb', nargs='+', type=float, default=[100.0],
                        help='sizes of synthetic float32 state dicts, in MB (default: 100)')
    parser.add_argument('--no-demo', action='store_true',
                        help='skip the demo teachers')
    parser.add_argument('--repeats', type=int, default=5, help='timed rounds (default 5)')
    args = parser.parse_args()

    import torch
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        files = [(p, p) for p in args.checkpoint]
        if not args.no_demo:
            files += [(f'{osp.basename(c)} (random weights + momentum)',
                       runner_like_checkpoint(c, osp.join(tmp, f'{i}.pth')))
                      for i, c in enumerate(DEMO_TEACHERS)]
        files += [(f'synthetic {mb:g} MB', synthetic_checkpoint(mb, osp.join(tmp, f's{mb}.pth')))
                  for mb in args.synthetic_mb]
        for label, path in files:
            t = time_phases(path, args.repeats)
            rows.append((label, os.path.getsize(path) / 1e6, t))
    print('| checkpoint | size (MB) | structure (ms) | with CRC (ms) | torch.load (ms) | '
          'CRC check / load |')
    print('|---|---|---|---|---|---|')
    for label, size, t in rows:
        print(f'| {label} | {size:.1f} | {t["structure"] * 1e3:.2f} | {t["crc"] * 1e3:.1f} | '
              f'{t["load"] * 1e3:.1f} | {t["crc"] / t["load"]:.2f} |')


if __name__ == '__main__':
    main()
