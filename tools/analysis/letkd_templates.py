"""Offline templates of letKD (mmkd.methods.letkd): run a trained teacher over a training set.

    # penultimate (LetKD): K k-means centres of the teacher's last-stage features
    python tools/analysis/letkd_templates.py configs/demo/digits/resnet34-wide_digits.py \\
        work_dirs/demo/digits/teacher.pth --point backbone.layer4 --kind kmeans \\
        --num-templates 64 --out work_dirs/demo/digits/letkd_penult.pth
    # intermediate (LetKDSubclass): LDA, 8 sub-classes per class, the sub-class score matrix
    python tools/analysis/letkd_templates.py configs/demo/digits/resnet34-wide_digits.py \\
        work_dirs/demo/digits/teacher.pth --point backbone.layer4.0 --kind subclass \\
        --num-subclasses 8 --lda-components 9 --out work_dirs/demo/digits/letkd_inter.pth

The teacher is built from CONFIG (its own model config, under its package's scope) and loads
CHECKPOINT strictly and safely. The images are the config's ``train_dataloader`` dataset with
the *test* pipeline (no random augmentation, as the authors), in order. Every spatial position
of ``--point``'s output map (B, C, H, W) is a sample (labelled with its image's class for
``subclass``). ``--max-samples all`` (the default, the authors') keeps every one of them;
``--max-samples N`` keeps ``min(N, all)``, drawn uniformly without replacement with ``--seed``.
All of them are held in memory as float32: positions x channels x 4 bytes (CIFAR-100's
50,000 images at 8x8 are 3.2 M positions: 0.8 GB at 64 channels (ResNet-56/110 ``layer3``),
1.6 GB at 128 (WRN-40-2), 3.3 GB at 256 (ResNet-32x4)); bound it with ``--max-samples`` where
that does not fit (the ImageNet configs keep 1 M).

k-means (``--backend``):
- ``faiss`` (the default, the authors'): ``faiss.Kmeans`` on the CPU with the authors' settings
  (adagorgun/letKD-framework ``cluster_utils.run_kmeans``: ``niter`` 20, K initial centres drawn
  at random among the samples, no sub-sampling: ``max_points_per_centroid`` 10^7), seeded with
  ``--seed`` (the authors draw a random seed); ``--kmeans-iters`` changes the 20.
- ``sklearn``: scikit-learn's ``KMeans`` (k-means++, one initialisation, ``--seed``, at most
  ``--kmeans-iters`` iterations, default 300) up to 50,000 samples, ``MiniBatchKMeans`` above
  (the tool's behaviour before ``faiss``; bounded time on a large sample).

- ``kmeans``: k-means with K = ``--num-templates`` centres -> ``centres`` (K, C).
- ``subclass``: scikit-learn's ``LinearDiscriminantAnalysis`` (svd solver, the authors') on the
  positions and their class -> ``lda_mean`` (C,) and ``lda_scalings`` (C, n), so that
  ``z = (f - lda_mean) @ lda_scalings`` is ``lda.transform(f)``; per class, k-means with M
  centres in LDA space -> ``centres`` (N*M, n), sub-class s = M * class + j; ``score_matrix``
  (N*M, N*M): row s is the fraction of sub-class s's positions whose nearest sub-class *mean*
  (over all N*M) is each s' (the authors' nearest-centre counts).

The file (a dict of tensors and plain values, loaded with ``weights_only=True``) also records
the point, config, checkpoint, sample count and seed, and is written atomically.
"""
import argparse
import io
import os.path as osp
import sys
import time
from typing import Optional, Tuple

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from mmengine.config import DictAction  # noqa: E402

KMEANS_FULL_MAX = 50_000  # sklearn backend: above this many samples, MiniBatchKMeans
FAISS_ITERS = 20  # the authors' niter (cluster_utils.run_kmeans)


def build_teacher(config: str, checkpoint: str, cfg_options=None):
    from mmengine.config import Config

    from mmkd.distillers import (build_model_in_scope, load_checkpoint_strict,
                                 resolve_config_path)
    from mmkd.distillers.model_builder import without_pretrained
    cfg = Config.fromfile(resolve_config_path(config))  # a file or 'mmpretrain::...'
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if cfg.get('custom_imports'):
        from mmengine.utils import import_modules_from_strings
        import_modules_from_strings(**cfg.custom_imports)
    model_cfg = without_pretrained(cfg.model)
    if model_cfg.get('data_preprocessor') is None and cfg.get('data_preprocessor'):
        model_cfg.data_preprocessor = cfg.data_preprocessor
    model = build_model_in_scope(model_cfg, cfg.get('default_scope'))
    load_checkpoint_strict(model, checkpoint, f'teacher ({config})')
    return cfg, model.eval().requires_grad_(False)


def build_loader(cfg, batch_size: int):
    """The train set with the test pipeline, in order (no augmentation)."""
    import copy

    from mmengine.registry import DefaultScope
    from mmengine.runner import Runner
    loader = copy.deepcopy(cfg.train_dataloader)
    loader.dataset.pipeline = copy.deepcopy(cfg.test_dataloader.dataset.pipeline)
    loader.sampler = dict(type='DefaultSampler', shuffle=False)
    loader.batch_size = batch_size
    loader.drop_last = False
    loader.pop('batch_sampler', None)
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope') or 'mmpretrain'):
        return Runner.build_dataloader(loader, seed=0)


def collect(model, loader, point: str, max_samples: Optional[int], seed: int,
            need_labels: bool):
    """(N, C) float32 features of every kept position (all of them when ``max_samples`` is
    None) and (N,) int64 labels (or None)."""
    from tqdm import tqdm

    from mmkd.recorders.module_recorder import find_module
    captured = {}
    module = find_module(model, point, 'teacher')

    def hook(_, __, output):
        if not isinstance(output, torch.Tensor) or output.dim() != 4:
            raise ValueError(f'--point {point!r} gives {type(output).__name__}'
                             f'{tuple(output.shape) if isinstance(output, torch.Tensor) else ""}'
                             '; letKD templates need one (B, C, H, W) map.')
        captured['x'] = output

    handle = module.register_forward_hook(hook)
    feats, labels, seen = [], [], 0
    chosen = None  # sorted indices of the kept positions, over the whole pass
    try:
        with torch.no_grad():
            for data in tqdm(loader, desc=f'teacher over {len(loader.dataset)} images',
                             file=sys.stdout):
                data = model.data_preprocessor(data, False)
                model(data['inputs'], data['data_samples'], mode='tensor')
                x = captured.pop('x').float()
                b, c, h, w = x.shape
                rows = x.permute(0, 2, 3, 1).reshape(-1, c)
                if chosen is None:
                    # Exactly min(max_samples, total) positions, uniformly without replacement
                    # (numpy's choice: O(max_samples) memory when that is under 5 % of the
                    # total, else one int64 per position), fixed by the seed.
                    size = (h, w)
                    total = len(loader.dataset) * h * w
                    chosen = (np.arange(total) if max_samples is None or max_samples >= total
                              else np.sort(np.random.default_rng(seed).choice(
                                  total, size=max_samples, replace=False, shuffle=False)))
                elif (h, w) != size:
                    raise ValueError(f'--point {point!r}: the map is {h}x{w} in this batch but '
                                     f'{size[0]}x{size[1]} in the first; the test pipeline must '
                                     'give every image one size.')
                lo, hi = np.searchsorted(chosen, [seen, seen + rows.shape[0]])
                idx = torch.from_numpy(chosen[lo:hi] - seen)
                feats.append(rows[idx])
                seen += rows.shape[0]
                if need_labels:
                    y = torch.cat([s.gt_label.reshape(-1)[:1] for s in data['data_samples']])
                    labels.append(y.repeat_interleave(h * w)[idx])
    finally:
        handle.remove()
    x = torch.cat(feats).numpy()
    y = torch.cat(labels).numpy() if need_labels else None
    return x, y, seen


def kmeans(x: np.ndarray, k: int, seed: int, backend: str = 'faiss',
           iters: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray, float]:
    """K-means of ``x`` (N, C): centres (K, C) float32, each sample's centre (N,) int64 and the
    mean squared distance to it (the k-means objective per sample)."""
    if len(x) < k:
        raise ValueError(f'{len(x)} samples for {k} centres: raise --max-samples or lower the '
                         'number of centres.')
    x = np.ascontiguousarray(x, dtype=np.float32)
    if backend == 'faiss':
        import faiss
        km = faiss.Kmeans(x.shape[1], k, niter=iters or FAISS_ITERS, seed=seed,
                          max_points_per_centroid=10_000_000, verbose=False)
        km.train(x)
        dist, assign = km.index.search(x, 1)
        return km.centroids.astype(np.float32), assign[:, 0].astype(np.int64), float(
            dist.mean())
    from sklearn.cluster import KMeans, MiniBatchKMeans
    if len(x) <= KMEANS_FULL_MAX:
        km = KMeans(n_clusters=k, n_init=1, random_state=seed, max_iter=iters or 300)
    else:
        km = MiniBatchKMeans(n_clusters=k, n_init=1, random_state=seed, batch_size=4096,
                             max_iter=iters or 100)
    km.fit(x)
    return (km.cluster_centers_.astype(np.float32), km.labels_.astype(np.int64),
            float(km.inertia_) / len(x))


def subclass_templates(x: np.ndarray, y: np.ndarray, num_subclasses: int, components: int,
                       seed: int, backend: str = 'faiss', iters: Optional[int] = None) -> dict:
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    classes = int(y.max()) + 1
    missing = sorted(set(range(classes)) - set(np.unique(y).tolist()))
    if missing:
        raise ValueError(f'classes {missing} have no sampled position: raise --max-samples.')
    lda = LinearDiscriminantAnalysis(n_components=components).fit(x, y)
    mean = lda.xbar_.astype(np.float32)
    scalings = lda.scalings_[:, :components].astype(np.float32)
    z = (x - mean) @ scalings
    assert np.allclose(z, lda.transform(x)[:, :components], atol=1e-3), 'LDA projection'
    m = num_subclasses
    centres = np.zeros((classes * m, components), np.float32)
    assign = np.zeros(len(x), np.int64)
    for c in range(classes):
        idx = np.flatnonzero(y == c)
        cc, labels, _ = kmeans(z[idx], m, seed, backend, iters)
        centres[c * m:(c + 1) * m] = cc
        assign[idx] = c * m + labels
    counts = np.bincount(assign, minlength=classes * m)
    means = np.stack([z[assign == s].mean(0) if counts[s] else centres[s]
                      for s in range(classes * m)])
    # Nearest sub-class mean of every position, over all N*M (unmasked), in chunks of rows.
    nearest = np.concatenate([
        ((z[i:i + 8192, None, :] - means[None]) ** 2).sum(-1).argmin(1)
        for i in range(0, len(z), 8192)])
    scores = np.zeros((classes * m, classes * m), np.float64)
    np.add.at(scores, (assign, nearest), 1.0)
    scores /= np.maximum(counts[:, None], 1)
    return dict(lda_mean=torch.from_numpy(mean), lda_scalings=torch.from_numpy(scalings),
                centres=torch.from_numpy(centres),
                score_matrix=torch.from_numpy(scores.astype(np.float32)),
                num_subclasses=m, num_classes=classes)


def max_samples_arg(text: str) -> Optional[int]:
    """``--max-samples``: 'all' (None) or a positive count."""
    if text == 'all':
        return None
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected 'all' or a positive integer")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f'{text!r}: expected a positive integer')
    return value


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config', help="the teacher's config (its model and train_dataloader; "
                        "a file or 'mmpretrain::...')")
    parser.add_argument('checkpoint', help="the teacher's weights (path or URL)")
    parser.add_argument('--point', required=True,
                        help='teacher module whose output map (B, C, H, W) is clustered')
    parser.add_argument('--kind', choices=['kmeans', 'subclass'], required=True)
    parser.add_argument('--out', required=True, help='templates file to write (.pth)')
    parser.add_argument('--num-templates', type=int, default=4096,
                        help='kmeans: K (default 4096, the authors\')')
    parser.add_argument('--num-subclasses', type=int, default=8,
                        help='subclass: k-means centres per class (default 8, the authors\')')
    parser.add_argument('--lda-components', type=int, default=60,
                        help='subclass: LDA dimensions (default 60, the authors\' on '
                        'CIFAR-100; at most min(C, classes - 1))')
    parser.add_argument('--max-samples', type=max_samples_arg, default=None,
                        metavar='{all,N}', help="positions kept: 'all' (default, the "
                        "authors'), or N drawn uniformly (memory: positions x C x 4 bytes)")
    parser.add_argument('--backend', choices=['faiss', 'sklearn'], default='faiss',
                        help="k-means: 'faiss' (default; the authors' 20 iterations from "
                        "random samples) or scikit-learn's (k-means++; MiniBatchKMeans above "
                        f"{KMEANS_FULL_MAX:,} samples)")
    parser.add_argument('--kmeans-iters', type=positive_int, default=None,
                        help=f'k-means iterations (default: faiss {FAISS_ITERS}, the '
                        "authors'; sklearn's own 300 / 100 for the mini-batch version)")
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--batch-size', type=int, default=64)
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
                        help='overrides of the config')
    args = parser.parse_args(argv)
    # After parsing, so that --help answers at once (the OpenMMLab packages take seconds).
    import mmkd  # noqa: F401  (safe checkpoint loading; mmkd's datasets and models)
    start = time.time()
    torch.manual_seed(args.seed)
    cfg, model = build_teacher(args.config, args.checkpoint, args.cfg_options)
    loader = build_loader(cfg, args.batch_size)
    x, y, seen = collect(model, loader, args.point, args.max_samples, args.seed,
                         args.kind == 'subclass')
    print(f'{len(x)} of {seen} positions kept ({x.shape[1]} channels, '
          f'{x.nbytes / 2**20:.0f} MiB)')
    if args.kind == 'kmeans':
        centres, _, objective = kmeans(x, args.num_templates, args.seed, args.backend,
                                       args.kmeans_iters)
        print(f'k-means ({args.backend}): mean squared distance to the nearest centre '
              f'{objective:.6g}')
        out = dict(centres=torch.from_numpy(centres), kmeans_objective=objective)
    else:
        out = subclass_templates(x, y, args.num_subclasses, args.lda_components, args.seed,
                                 args.backend, args.kmeans_iters)
    out.update(kind=args.kind, point=args.point, config=args.config,
               checkpoint=args.checkpoint, num_samples=len(x), seed=args.seed,
               backend=args.backend)
    buf = io.BytesIO()
    torch.save(out, buf)
    from mmkd.utils.atomic_io import atomic_write
    atomic_write(buf.getvalue(), args.out)
    shapes = {k: tuple(v.shape) for k, v in out.items() if isinstance(v, torch.Tensor)}
    print(f'wrote {args.out}: {args.kind} {shapes} ({time.time() - start:.0f} s)')


if __name__ == '__main__':
    main()
