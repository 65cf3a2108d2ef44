"""Run a distillation config's teachers once over its training batches and store their values.

    python tools/cache_teacher.py CONFIG --out DIR [--teachers NAME ...] [--dtype fp32|fp16]
                                  [--topk K] [--max-size-gib G] [--cfg-options ...]
    bash tools/dist_cache_teacher.sh CONFIG NUM_PROCESSES --out DIR   (one shard per rank)

Training then reads them instead of running the teacher::

    python tools/train.py CONFIG --cfg-options model.teachers.NAME.cache=DIR
    (model.teacher.cache=DIR for the one-teacher shorthand)

The batches are the ones training will see: the run is built from the config as
``tools/train.py`` builds it (seed, dataloader, sampler, validation loop, world size), and the
training loop is followed without the student: every epoch (or iteration) of
``train_cfg``, each batch through the student's data preprocessor, each teacher's view of it.
Everything the values depend on is fingerprinted (see :mod:`mmkd.distillers.teacher_cache`),
and a run whose config differs is refused naming what differs.

Storage: ``--dtype fp32`` (default) keeps the live values (training from the cache is then
bit-identical to the live run on the same machine); ``--dtype fp16`` halves them; ``--topk K``
keeps the K largest logits of every 2-D (N, C) point and one fill value per sample (for blocks
whose method reads logits only; the error it introduces is measured and printed, and stored in
``meta.json`` as ``topk_error``). ``--max-size-gib`` refuses a cache that would be larger.

The randomness must be seeded in the config (``randomness=dict(seed=...)``): an unseeded run
draws other batches each time. A student preprocessor's batch augmentations that draw from
torch's generator (Mixup, CutMix) cannot be replayed: training draws from that generator for
the student too; such batches are refused at training time as not in the cache.
"""
import argparse
import os
import os.path as osp
import sys
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a clone

from mmengine.config import DictAction  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Store a distillation config's teacher values over its training batches "
        '(mmkd), for training with teachers.<name>.cache=DIR')
    parser.add_argument('config', help='the distillation config training will use')
    parser.add_argument('--out', required=True, help='the cache folder (created)')
    parser.add_argument('--teachers', nargs='+', help='teachers to cache (default: every '
                        'frozen teacher)')
    parser.add_argument('--dtype', choices=['fp32', 'fp16'], default='fp32',
                        help='storage precision of the values (fp32: exact)')
    parser.add_argument('--topk', type=int, default=None,
                        help='keep only the K largest logits of 2-D (N, C) points, with one '
                        'fill value per sample for the others')
    parser.add_argument('--max-size-gib', type=float, default=64.0,
                        help='refuse a cache larger than this (all ranks together)')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace a complete cache already in --out')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings in the config, key=value (as for training)')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher (as training will be launched)')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if args.topk is not None and args.topk < 1:
        parser.error(f'--topk {args.topk}: give a positive number of logits to keep.')
    if args.max_size_gib <= 0:
        parser.error('--max-size-gib must be positive.')
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


class TopkError:
    """How far the rebuilt top-K logits are from the full ones: mean KL(p_full || p_topk)
    and total variation of the softmax at temperatures 1 and 4, over every cached sample."""
    TEMPERATURES = (1.0, 4.0)

    def __init__(self):
        self.sums, self.n = {}, 0

    def add(self, full, rebuilt):
        import torch.nn.functional as F
        full, rebuilt = full.float(), rebuilt.float()
        for tau in self.TEMPERATURES:
            log_p = F.log_softmax(full / tau, 1)
            log_q = F.log_softmax(rebuilt / tau, 1)
            kl = (log_p.exp() * (log_p - log_q)).sum(1)
            tv = 0.5 * (log_p.exp() - log_q.exp()).abs().sum(1)
            for key, v in ((f'kl_T{tau:g}', kl), (f'tv_T{tau:g}', tv)):
                self.sums[key] = self.sums.get(key, 0.0) + float(v.sum())
        self.n += full.shape[0]

    def result(self) -> dict:
        return {k: v / self.n for k, v in self.sums.items()} if self.n else {}


def build_runner(args):
    """The training run as tools/train.py builds it, with every teacher live."""
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner

    from mmkd.utils import default_train_hooks, is_distiller_config, load_tool_config
    from mmkd.utils.dist import setup_cpu_distributed

    cfg = load_tool_config(args.config, args.launcher, args.cfg_options,
                           osp.join(args.out, 'log'))
    if not is_distiller_config(cfg.get('model')):
        raise SystemExit(f'{args.config}: its model is not a distiller; there is no teacher '
                         'to cache.')
    if (cfg.get('randomness') or {}).get('seed') is None:
        raise SystemExit(f'{args.config}: set randomness=dict(seed=...) in the config (or '
                         '--cfg-options randomness.seed=0): an unseeded run draws other '
                         'batches each time, which no cache can replay.')
    for spec in [cfg.model.get('teacher')] + list((cfg.model.get('teachers') or {}).values()):
        if isinstance(spec, dict):
            spec.pop('cache', None)  # build every teacher live
    default_train_hooks(cfg)
    if args.launcher != 'none' and cfg.get('model_wrapper_cfg') is None:
        cfg.model_wrapper_cfg = dict(type='mmkd.DistillerDataParallel',
                                     broadcast_buffers=False,
                                     find_unused_parameters=cfg.get('find_unused_parameters',
                                                                    False))
    if args.launcher != 'none':
        setup_cpu_distributed(cfg)
    runner = RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)
    return cfg, runner


def training_batches(runner):
    """The training loop's batches, in order, as ``Runner.train`` would draw them (the same
    builds in the same order before the first batch; the sampler's epoch set as
    DistSamplerSeedHook sets it)."""
    from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop

    loop = runner.build_train_loop(runner._train_loop)
    runner._train_loop = loop
    if runner._val_loop is not None:  # its sampler draws a seed from NumPy, as in training
        runner._val_loop = runner.build_val_loop(runner._val_loop)
    runner._init_model_weights()  # draws from torch's generator, as in training
    if isinstance(loop, EpochBasedTrainLoop):
        for epoch in range(loop.max_epochs):
            sampler = getattr(loop.dataloader, 'sampler', None)
            if hasattr(sampler, 'set_epoch'):
                sampler.set_epoch(epoch)
            for data in loop.dataloader:
                yield epoch, data
    elif isinstance(loop, IterBasedTrainLoop):
        for _ in range(loop.max_iters):
            yield 0, next(loop.dataloader_iterator)
    else:
        raise SystemExit(f'train_cfg: the loop {type(loop).__name__} is neither '
                         'EpochBasedTrainLoop nor IterBasedTrainLoop; its batches cannot be '
                         'replayed.')


def main(args=None):
    args = args or parse_args()
    import torch
    from mmengine.dist import all_gather_object, barrier, get_dist_info
    from mmengine.logging import print_log
    from mmengine.model import is_model_wrapper

    import mmkd  # noqa: F401
    from mmkd.distillers import Distiller
    from mmkd.distillers.teacher_cache import (META, CacheWriter, cache_batch, cache_meta,
                                               decode, encode, method_refusal, run_fingerprint,
                                               teacher_fingerprint, teacher_model_config,
                                               write_meta)

    if osp.isfile(osp.join(args.out, META)) and not args.overwrite:
        raise SystemExit(f'{args.out} holds a complete cache already; give --overwrite to '
                         'replace it, or another --out.')
    cfg, runner = build_runner(args)
    rank, world_size = get_dist_info()
    if rank == 0 and osp.isfile(osp.join(args.out, META)):
        os.remove(osp.join(args.out, META))  # incomplete until this build finishes
    barrier()
    distiller = runner.model.module if is_model_wrapper(runner.model) else runner.model
    frozen = [n for n, t in distiller._teachers.items() if t.kind == 'frozen']
    names = args.teachers or frozen
    wrong = [n for n in names if n not in frozen]
    if wrong:
        raise SystemExit(f'--teachers {wrong}: not frozen teachers of this config; the frozen '
                         f'ones are {frozen}.')
    for block_name, block in distiller.blocks.items():
        refusal = method_refusal(block_name, block.method, ()) \
            if set(block.teacher_names) & set(names) else None
        if refusal:
            raise SystemExit(f'{refusal}; cache the other teachers (--teachers) or none.')
    specs = Distiller._teacher_configs(cfg.model.get('teacher'), cfg.model.get('teachers'))
    writer = CacheWriter(args.out, rank, args.dtype, args.topk)
    errors = {}
    start, batches, last_log = time.perf_counter(), 0, time.perf_counter()
    limit = args.max_size_gib * 2 ** 30
    total_batches = None
    with torch.no_grad():
        for epoch, data in training_batches(runner):
            data = distiller.data_preprocessor(data, True)
            inputs, samples = data['inputs'], data['data_samples']
            recorded = cache_batch(distiller, names, inputs, samples, writer)
            for name, values in recorded.items() if args.topk is not None else ():
                layouts = writer.shards[name]['layouts']
                for point, value in values.items():
                    if layouts[point]['components'][0]['encoding'] == 'topk':
                        rebuilt = decode(encode(value, layouts[point]), layouts[point],
                                         value.device)
                        errors.setdefault(f'{name}:{point}', TopkError()).add(value, rebuilt)
            batches += 1
            if batches == 1:
                total_batches = _check_size(runner, writer, names, world_size, limit,
                                            len(inputs), distiller, args.topk)
            if time.perf_counter() - last_log > 30 or batches == total_batches:
                last_log = time.perf_counter()
                print_log(f'cache_teacher: epoch {epoch}, {batches}/{total_batches} batches, '
                          f'{time.perf_counter() - start:.0f} s', logger='current')
    summary = writer.close(distiller)
    seconds = time.perf_counter() - start
    shards = all_gather_object(summary)
    gathered_errors = all_gather_object({k: (e.sums, e.n) for k, e in errors.items()})
    if rank == 0:
        topk_error = {}
        for key in errors:
            merged = TopkError()
            for part in gathered_errors:
                sums, n = part.get(key, ({}, 0))
                for k, v in sums.items():
                    merged.sums[k] = merged.sums.get(k, 0.0) + v
                merged.n += n
            topk_error[key] = merged.result()
        preprocessor = distiller.student_config.get('data_preprocessor')
        fingerprints = {n: teacher_fingerprint(specs[n], teacher_model_config(specs[n]),
                                               preprocessor) for n in names}
        rows = sum(s[names[0]]['rows'] for s in shards) if names else 0
        epochs = getattr(runner.train_loop, 'max_epochs', None)
        meta = cache_meta(shards, fingerprints, config=args.config,
                          storage=dict(dtype=args.dtype, topk=args.topk),
                          run_fingerprint=run_fingerprint(cfg, world_size), samples=rows,
                          epochs=epochs, build_seconds=round(seconds, 3),
                          torch=torch.__version__, mmkd=mmkd.__version__,
                          topk_error=topk_error, created=time.strftime('%Y-%m-%dT%H:%M:%S%z'))
        write_meta(args.out, meta)
        per_epoch = {n: meta['teachers'][n]['bytes_per_sample'] for n in names}
        print(f'Cached {names} in {args.out}: {rows} samples ({epochs or "iteration-based"} '
              f'epochs) in {seconds:.1f} s; bytes per sample per epoch {per_epoch}.')
        for key, err in topk_error.items():
            print(f'top-{args.topk} error at {key}: ' +
                  ', '.join(f'{k} {v:.3g}' for k, v in sorted(err.items())))
    barrier()


def _check_size(runner, writer, names, world_size, limit, batch_size, distiller, topk):
    """After the first batch: the planned number of batches, and a refusal when the cache
    would exceed ``limit`` bytes or a top-K point feeds a method that does not read logits."""
    from mmkd.distillers.teacher_cache import method_refusal
    loop = runner.train_loop
    total = len(loop.dataloader) * loop.max_epochs if hasattr(loop, 'max_epochs') \
        else loop.max_iters
    size = sum(writer.bytes_per_row(n) for n in names) * batch_size * total * world_size
    if size > limit:
        detail = '; '.join(
            f'{n}: {writer.bytes_per_row(n):,} bytes per sample' for n in names)
        raise SystemExit(f'The cache would be about {size / 2 ** 30:.1f} GiB ({detail}; '
                         f'{total} batches of {batch_size} on {world_size} process(es)), more '
                         'than --max-size-gib: cache the logits only (--teachers, or blocks '
                         'reading logits), store them as --topk K or --dtype fp16, or raise '
                         'the limit.')
    if topk is not None:
        for name in names:
            layouts = writer.shards[name]['layouts']
            topk_points = {p for p, lay in layouts.items()
                           if any(c['encoding'] == 'topk' for c in lay['components'])}
            for block_name, block in distiller.blocks.items():
                read = {str(p) for n, p in block.teacher_points if n == name} & topk_points
                refusal = method_refusal(block_name, block.method, read)
                if refusal:
                    raise SystemExit(f'{refusal}. Build without --topk.')
    return total


if __name__ == '__main__':
    arguments = parse_args()
    from mmkd.utils.dist import tear_down_process_group
    with tear_down_process_group():
        main(arguments)
