"""What distillation costs beyond the student, the teacher's forward and the method's modules.

    python tools/benchmark/overhead.py CONFIG [--steps 30] [--warmup 10] [--device cpu|cuda]
    python tools/benchmark/overhead.py --all-demo [--out-dir docs/benchmarks]

For a distillation config, on one real batch from its train dataloader, four phases:

- ``student``: the student alone (forward with its task losses, backward, SGD step);
- ``teacher``: the teacher's forward exactly as the distiller runs it (no grad, eval mode,
  recorder hooks on, stopped after the deepest recorded module);
- ``methods``: the blocks' methods alone (forward, loss weights, backward, SGD step over the
  methods' parameters) on the student/teacher values recorded once from the same batch (the
  student values as leaf tensors that require grad, so the backward stops there);
- ``distill``: the distiller's full training step (teacher forward, student, blocks, backward,
  SGD step over student and method parameters).

Every step ends as MMEngine's ``OptimWrapper.update_params`` does (backward, step, gradients
set to None). What the distill step costs beyond the three parts,
``remainder = distill - (student + teacher + methods)``, is the framework's own overhead
(recorder hooks, gathering the values, loss bookkeeping, the non-finite check).

**Timing in one process, interleaved.** The phases have separate state (two distillers are
built from the config with the same seed: one is the ``distill`` phase; from the other come
the plain student with its recorder hooks removed, the teacher with its recorder, and the
methods, each phase with its own optimizer) and run in rounds, one step of each phase per
round, in an order shuffled every round (seeded; ``--order fixed`` keeps student, teacher,
methods, distill) so that no phase always follows the same one (caches, allocator). The first
``--warmup`` rounds are not timed; then ``--steps`` rounds are. The garbage collector is off
during a round and runs between rounds; on CUDA each step is synchronised before and after,
and the caching allocator is warm for every phase after the warm-up rounds. A load spike on a
shared machine then hits all four phases of a round alike, and the ratios are computed per
round (the four steps of a round ran within about a second of each other) before taking
their median (the previous version of this script reported the ratio of per-phase medians,
each phase timed in its own process): the headline ``time_ratio``, ``time_ratio_with_methods``,
``remainder_ms`` and ``remainder_pct`` are medians over rounds of the per-round values, each
reported with its interquartile range and min-max; per phase, the median step time with the
same spread. The raw per-round times are in the JSON (``rounds``).

**Memory**, per phase, after the timed rounds, in the same process: what the phase keeps
resident (its weights and buffers and its optimizer's state) plus the peak of what one step
allocates on top (CUDA: ``max_memory_allocated`` since a reset just before the step, minus
what was allocated then; CPU: the running sum of the torch profiler's allocation and free
events over one step). Both count only the phase's own tensors, so measuring in the process
that also holds the other phases is meaningful. The ``methods`` phase's recorded input values
are not counted (in ``distill`` they are the models' activations).

``--breakdown`` also times the parts of each step (the distill step's teacher forward,
student forward, methods' forwards, non-finite check, backward and optimizer step; the student
and methods steps' forward, backward and optimizer step; ``other`` is the rest of the step) by
wrapping those calls, with a few microseconds of timer calls per part. ``--threads N`` sets
torch's intra-op threads: on a loaded CPU machine, one thread per process keeps the timings
stable (two threads on two busy cores wait for each other).

Prints a table and ``distill / (student + teacher)`` for time and memory. With
``--random-teacher`` (default when the checkpoint is a URL or missing), the teacher gets
random weights of the right architecture: speed and memory do not depend on the values.

``--all-demo`` runs every distillation config under ``configs/demo/`` (a config whose model is
a distiller, :func:`mmkd.utils.is_distiller_config`; ``_base_*`` files are skipped), each in
its own process, and prints one table; ``--out-dir`` writes ``overhead_<config name>.json``
for each.
"""
import argparse
import gc
import glob
import json
import os
import os.path as osp
import random
import statistics
import subprocess
import sys
import tempfile
import time

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO = osp.join(REPO, 'configs', 'demo')
sys.path.insert(0, REPO)

PHASES = ('student', 'teacher', 'methods', 'distill')
LABELS = dict(student='student only (fwd+bwd+step)', teacher='teacher forward (as distilled)',
              methods='methods alone (fwd+bwd+step)', distill='distillation (fwd+bwd+step)')


# ---------------------------------------------------------------------- statistics
def spread(values) -> dict:
    """Median, quartiles (inclusive method, so one value gives itself) and extremes."""
    values = sorted(values)
    if len(values) > 1:
        q1, _, q3 = statistics.quantiles(values, n=4, method='inclusive')
    else:
        q1 = q3 = values[0]
    return dict(median=statistics.median(values), q1=q1, q3=q3, min=values[0],
                max=values[-1])


def per_round(rounds) -> dict:
    """The derived quantities of each round, from that round's four phase times (ms)."""
    out = dict(time_ratio=[], time_ratio_with_methods=[], remainder_ms=[], remainder_pct=[],
               distill_over_student=[])
    for r in rounds:
        s, t, m, d = (r[p] for p in PHASES)
        out['distill_over_student'].append(d / s)  # the cost of distilling, from a cache
        out['time_ratio'].append(d / (s + t))
        out['time_ratio_with_methods'].append(d / (s + t + m))
        out['remainder_ms'].append(d - (s + t + m))
        out['remainder_pct'].append(100 * (d - (s + t + m)) / d)
    return out


def summarise(rounds, memory) -> dict:
    """Everything reported, from the per-round phase times (ms) and the per-phase memory."""
    stats = {p: spread([r[p] for r in rounds]) for p in PHASES}
    derived = {k: spread(v) for k, v in per_round(rounds).items()}
    mem = {p: memory[p]['mem_mib'] for p in PHASES}
    summary = {f'{p}_median_s': stats[p]['median'] / 1e3 for p in PHASES}
    summary.update({f'{p}_mem_mib': mem[p] for p in PHASES})
    summary.update({k: v['median'] for k, v in derived.items()})
    summary.update(
        memory_ratio=mem['distill'] / (mem['student'] + mem['teacher']),
        memory_ratio_with_methods=mem['distill'] / (mem['student'] + mem['teacher'] +
                                                   mem['methods']),
        time_ms=stats, derived=derived, memory=memory)
    with_parts = [r['parts'] for r in rounds if r.get('parts')]
    if with_parts:
        summary['parts_ms'] = {
            phase: {k: spread([p[phase][k] for p in with_parts]) for k in with_parts[0][phase]}
            for phase in PHASES if phase in with_parts[0]}
    return summary


# ---------------------------------------------------------------------- memory
def cpu_step_peak_mib(step) -> float:
    """Peak of live torch CPU allocations during one call of ``step``, in MiB."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    live = peak = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        live += event.self_cpu_memory_usage  # allocations positive, frees negative
        peak = max(peak, live)
    return peak / 2 ** 20


def resident_mib(modules, optim) -> float:
    import torch
    size = sum(t.numel() * t.element_size() for m in modules
               for t in list(m.parameters()) + list(m.buffers()))
    if optim is not None:
        size += sum(t.numel() * t.element_size() for st in optim.state.values()
                    for t in st.values() if torch.is_tensor(t))
    return size / 2 ** 20


# ---------------------------------------------------------------------- building
def build(config, device, random_teacher, batch_size, copies=2, seed=0, cache=None):
    """``copies`` distillers built from ``config`` with the same seed, and one batch of its
    train dataloader after the data preprocessor (on ``device``). With ``cache``
    (``dict(dtype=..., topk=...)``) the first one reads its frozen teachers from a cache of
    that batch written by the second (:func:`cached_copy`)."""
    import torch
    from mmengine.registry import MODELS as ROOT
    from mmengine.registry import DefaultScope
    from mmengine.runner import Runner

    from mmkd.utils import load_tool_config
    cfg = load_tool_config(config)
    ensure_shapes_data(cfg)
    model_cfg = cfg.model
    if cfg.get('data_preprocessor'):
        model_cfg.data_preprocessor = cfg.data_preprocessor
    from mmkd.utils import pretrained_teacher_configs
    with tempfile.TemporaryDirectory() as tmp:
        for key, t in pretrained_teacher_configs(model_cfg).items():
            name = key.split('.')[-1]
            ckpt = t.checkpoint
            if random_teacher or ckpt.startswith(('http://', 'https://')) or \
                    not osp.isfile(ckpt):
                from mmkd.distillers import (build_model_in_scope, load_model_config,
                                             without_pretrained)
                t_cfg, scope = load_model_config(t.get('config') or t.model)
                torch.manual_seed(seed)
                teacher = build_model_in_scope(without_pretrained(t_cfg), t.get('scope') or scope)
                path = osp.join(tmp, f'random_{name}.pth')
                torch.save(dict(state_dict=teacher.state_dict()), path)
                t.checkpoint = path
        models = []
        with DefaultScope.overwrite_default_scope(cfg.default_scope):
            for _ in range(copies):
                torch.manual_seed(seed)
                models.append(ROOT.build(model_cfg).to(device))
            loader_cfg = cfg.train_dataloader
            loader_cfg.num_workers = 0
            loader_cfg.persistent_workers = False
            if batch_size:
                loader_cfg.batch_size = batch_size
            data = next(iter(Runner.build_dataloader(loader_cfg, seed=seed)))
            data = models[0].data_preprocessor(data, training=True)
            if cache is not None:  # while the (random) teacher checkpoints exist
                models[0] = cached_copy(model_cfg, models[1], data['inputs'],
                                        data['data_samples'], cache, seed).to(device)
    return models, data['inputs'], data['data_samples']


def cached_copy(model_cfg, source, inputs, samples, cache, seed):
    """A distiller built from ``model_cfg`` whose frozen teachers read a cache (in a
    temporary folder, removed at exit) holding ``source``'s teacher values for this one batch,
    written as ``tools/cache_teacher.py`` writes them: the ``distill`` phase then measures a
    step from the cache (digest, lookup, memory-mapped read and CRC check included)."""
    import atexit
    import copy
    import shutil

    import torch
    from mmengine.registry import MODELS as ROOT

    from mmkd.distillers import Distiller
    from mmkd.distillers.teacher_cache import (CacheWriter, cache_batch, cache_meta,
                                               teacher_fingerprint, teacher_model_config,
                                               write_meta)
    folder = tempfile.mkdtemp(prefix='mmkd_overhead_cache_')
    atexit.register(shutil.rmtree, folder, True)
    names = [n for n, t in source._teachers.items() if t.kind == 'frozen']
    writer = CacheWriter(folder, 0, cache['dtype'], cache['topk'])
    with torch.no_grad():
        cache_batch(source, names, inputs, samples, writer)
    summary = writer.close(source)
    cfg = copy.deepcopy(model_cfg)
    specs = Distiller._teacher_configs(cfg.get('teacher'), cfg.get('teachers'))
    preprocessor = source.student_config.get('data_preprocessor')
    write_meta(folder, cache_meta([summary], {
        n: teacher_fingerprint(specs[n], teacher_model_config(specs[n]), preprocessor)
        for n in names}, run_fingerprint={}))
    for name in names:
        specs[name]['cache'] = folder  # the same dicts as in cfg
    torch.manual_seed(seed)
    return ROOT.build(cfg)


def ensure_shapes_data(cfg):
    """Generate the demo's shapes dataset (as ``tools/demo.py`` does) when a config reads it
    from a folder that does not exist yet."""
    dataset = cfg.train_dataloader.dataset
    while 'dataset' in dataset and 'data_root' not in dataset:  # RepeatDataset and the like
        dataset = dataset.dataset
    kind = str(dataset.get('type', '')).split('.')[-1]
    root = dataset.get('data_root')
    if kind in ('ShapesDetDataset', 'ShapesSegDataset') and root and not osp.isdir(root):
        from mmkd.datasets import make_shapes_dataset
        make_shapes_dataset(root)


def map_tensors(fn, value):
    """``value`` (a tensor or nested tuples/lists of them) with ``fn`` applied to each tensor."""
    import torch
    if isinstance(value, torch.Tensor):
        return fn(value)
    if isinstance(value, (tuple, list)):
        return type(value)(map_tensors(fn, v) for v in value)
    return value


class PartClock:
    """Time spent in named parts of one phase's step (``--breakdown``); does nothing when off.

    ``wrap(key, fn)`` returns ``fn`` timed under ``key`` (summed over calls within a step;
    synchronised on CUDA) while ``on``; ``take()`` returns this step's parts and starts
    afresh.
    """

    def __init__(self, on: bool, sync):
        self.on, self.sync, self.parts = on, sync, {}

    def wrap(self, key, fn):
        if not self.on:
            return fn

        def timed(*args, **kwargs):
            if not self.on:  # switched off after the timed rounds
                return fn(*args, **kwargs)
            self.sync()
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.sync()
                self.parts[key] = self.parts.get(key, 0.0) + (time.perf_counter() - t0) * 1e3
        return timed

    def take(self) -> dict:
        parts, self.parts = self.parts, {}
        return parts


def make_phases(distiller, parts, inputs, samples, breakdown=False, sync=lambda: None):
    """One step function per phase, each with its own model and optimizer, what each keeps
    resident, and each phase's :class:`PartClock`. ``distiller`` runs the ``distill`` phase;
    ``parts`` (a second distiller built the same way) provides the plain student, the teacher
    as distilled and the methods. With ``breakdown``, the distill step's teacher forward,
    student forward (recorder hooks included), methods' forwards, non-finite check, backward
    and optimizer step are timed by wrapping those calls on its own objects.
    """
    import torch
    clocks = {p: PartClock(breakdown, sync) for p in PHASES}

    def sgd(params):
        params = [p for p in params if p.requires_grad]
        return torch.optim.SGD(params, lr=1e-4, momentum=0.9) if params else None

    def update(loss, optim, clock):  # as MMEngine's OptimWrapper.update_params
        clock.wrap('backward', loss.backward)()
        if optim is not None:
            clock.wrap('optimizer', lambda: (optim.step(), optim.zero_grad(set_to_none=True)))()

    # The methods' inputs: the values of one student step and one teacher forward on this
    # batch, taken before the student's recorder is removed.
    with torch.no_grad():
        parts.record_teachers(inputs, samples)
        parts.student_recorder.start()
        parts.student(inputs, samples, mode='loss')
        parts.student_recorder.finish()
    leaves = []

    def student_leaf(t):
        leaf = t.detach().clone().requires_grad_(t.is_floating_point())
        leaves.append(leaf)
        return leaf
    values = {}
    for name, block in parts.blocks.items():
        s = block.student_value(parts._learner_recorder(block))  # (a trainable teacher's)
        t = block.teacher_value(parts._teachers)
        values[name] = (map_tensors(student_leaf, s),
                        map_tensors(lambda x: x.detach().clone(), t))
    parts._clear_records()
    parts.student_recorder.remove()  # the student phase runs the plain student, no hooks
    student, teachers, methods = parts.student, list(parts.teachers.values()), parts.methods

    optims = dict(student=sgd(student.parameters()), teacher=None,
                  methods=sgd(methods.parameters()), distill=sgd(distiller.parameters()))
    if breakdown:  # instance attributes shadow the `forward`s (the same in every phase)
        student.forward = clocks['student'].wrap('forward', student.forward)
        for block in parts.blocks.values():
            block.method.forward = clocks['methods'].wrap('forward', block.method.forward)
        d_clock = clocks['distill']
        distiller._record = d_clock.wrap('teacher', distiller._record)
        distiller.student.forward = d_clock.wrap('student', distiller.student.forward)
        for block in distiller.blocks.values():
            block.method.forward = d_clock.wrap('methods', block.method.forward)
        distiller._check_finite_losses = d_clock.wrap('finite_check',
                                                      distiller._check_finite_losses)

    def student_step():
        loss, _ = student.parse_losses(student(inputs, samples, mode='loss'))
        update(loss, optims['student'], clocks['student'])

    def teacher_step():  # every teacher, on its own view of the batch
        parts.record_teachers(inputs, samples)
        parts._clear_records()

    def methods_step():
        total = 0
        for name, block in parts.blocks.items():
            for k, v in block.method(*values[name], samples).items():
                if 'loss' in k:  # as the distiller: weighted, summed; diagnostics not optimised
                    total = total + (v * block.loss_weight.current()).mean()
        update(total, optims['methods'], clocks['methods'])
        for leaf in leaves:
            leaf.grad = None

    def distill_step():
        loss, _ = distiller.parse_losses(distiller(inputs, samples, mode='loss'))
        update(loss, optims['distill'], clocks['distill'])

    steps = dict(student=student_step, teacher=teacher_step, methods=methods_step,
                 distill=distill_step)
    modules = dict(student=[student], teacher=teachers, methods=[methods],
                   distill=[distiller.student, *distiller.teachers.values(), distiller.methods])
    return steps, modules, optims, clocks


# ---------------------------------------------------------------------- measuring
def measure(steps, device, n_steps, warmup, order='shuffle', seed=0, clocks=None):
    """Per-round step times (ms) of every phase, interleaved as the module docstring says;
    with ``clocks`` (``--breakdown``) also each phase's parts, under ``'parts'``, where
    ``'other'`` is the step's time outside the timed parts."""
    import torch
    cuda = device.startswith('cuda')
    rng = random.Random(seed)
    sequence = list(PHASES)
    rounds = []
    enabled = gc.isenabled()
    try:
        for i in range(warmup + n_steps):
            if order == 'shuffle':
                rng.shuffle(sequence)
            gc.collect()
            gc.disable()
            times, parts = {}, {}
            for phase in sequence:
                if cuda:
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                steps[phase]()
                if cuda:
                    torch.cuda.synchronize()
                times[phase] = (time.perf_counter() - t0) * 1e3
                taken = clocks[phase].take() if clocks else {}
                if taken:
                    parts[phase] = dict(taken, other=times[phase] - sum(taken.values()))
            gc.enable()
            if i >= warmup:
                rounds.append(dict(times, order=list(sequence), **(
                    dict(parts=parts) if parts else {})))
    finally:
        if enabled:
            gc.enable()
    return rounds


def measure_memory(steps, modules, optims, device) -> dict:
    import torch
    cuda = device.startswith('cuda')
    out = {}
    for phase in PHASES:
        gc.collect()
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            steps[phase]()
            torch.cuda.synchronize()
            peak = (torch.cuda.max_memory_allocated() - base) / 2 ** 20
        else:
            peak = cpu_step_peak_mib(steps[phase])
        resident = resident_mib(modules[phase], optims[phase])
        out[phase] = dict(mem_mib=resident + peak, resident_mib=resident, step_peak_mib=peak)
    return out


def run_config(config, device, n_steps, warmup, random_teacher=False, batch_size=None,
               order='shuffle', seed=0, breakdown=False, cache=None) -> dict:
    import torch
    load_before = os.getloadavg()
    (distiller, parts), inputs, samples = build(config, device, random_teacher, batch_size,
                                                seed=seed, cache=cache)
    distiller.train()
    parts.train()
    sync = torch.cuda.synchronize if device.startswith('cuda') else (lambda: None)
    steps, modules, optims, clocks = make_phases(distiller, parts, inputs, samples,
                                                 breakdown, sync)
    rounds = measure(steps, device, n_steps, warmup, order, seed, clocks)
    for clock in clocks.values():  # memory is measured without the part timers' syncs
        clock.on = False
    memory = measure_memory(steps, modules, optims, device)
    methods = sorted({b.method_type for b in distiller.blocks.values()})
    return dict(
        config=config, methods=methods, device=device, steps=n_steps, warmup=warmup,
        teacher_cache=cache,
        order=order, torch_threads=torch.get_num_threads(), batch_size=int(inputs.shape[0]),
        input_shape=list(inputs.shape[1:]), **summarise(rounds, memory), rounds=rounds,
        load_avg_before=list(load_before), load_avg_after=list(os.getloadavg()))


# ---------------------------------------------------------------------- config discovery
def demo_distill_configs(root: str = DEMO) -> list:
    """Every distillation config under ``root`` (recursively), as paths relative to the
    repository: a config whose model is a distiller. ``_base_*`` files are partial configs
    meant to be inherited, not run."""
    from mmengine.config import Config

    from mmkd.utils import is_distiller_config
    found = []
    for path in sorted(glob.glob(osp.join(root, '**', '*.py'), recursive=True)):
        if osp.basename(path).startswith('_base_'):
            continue
        if is_distiller_config(Config.fromfile(path).get('model')):
            found.append(osp.relpath(path, REPO))
    return found


# ---------------------------------------------------------------------- output
def fmt_spread(s, digits=1, scale=1.0):
    return (f'{s["median"] * scale:.{digits}f} [{s["q1"] * scale:.{digits}f}, '
            f'{s["q3"] * scale:.{digits}f}]')


def print_report(r):
    print(f'config: {r["config"]} ({", ".join(r["methods"])})')
    print(f'device: {r["device"]} ({r["torch_threads"]} threads), batch {r["batch_size"]} x '
          f'{r["input_shape"]}, {r["steps"]} rounds after {r["warmup"]} warm-up, phases '
          f'interleaved ({r["order"]} order); load average {r["load_avg_before"][0]:.2f} '
          f'before, {r["load_avg_after"][0]:.2f} after')
    print('| step | median time (ms) [IQR] | min-max (ms) | peak memory (MiB) |\n|---|---|---|---|')
    for p in PHASES:
        s = r['time_ms'][p]
        print(f'| {LABELS[p]} | {fmt_spread(s)} | {s["min"]:.1f}-{s["max"]:.1f} | '
              f'{r[f"{p}_mem_mib"]:.1f} |')
    d = r['derived']
    print(f'time ratio   distill / (student + teacher) = {r["time_ratio"]:.3f} '
          f'[IQR {d["time_ratio"]["q1"]:.3f}, {d["time_ratio"]["q3"]:.3f}]')
    print(f'memory ratio distill / (student + teacher) = {r["memory_ratio"]:.3f}')
    print(f'time ratio   distill / (student + teacher + methods) = '
          f'{r["time_ratio_with_methods"]:.3f} [IQR {d["time_ratio_with_methods"]["q1"]:.3f}, '
          f'{d["time_ratio_with_methods"]["q3"]:.3f}]')
    print(f'remainder    distill - (student + teacher + methods) = '
          f'{fmt_spread(d["remainder_ms"], 2)} ms = {fmt_spread(d["remainder_pct"], 1)} % '
          'of distill (median [IQR] over rounds)')
    print(f'time ratio   distill / student = {r["distill_over_student"]:.3f} '
          f'[IQR {d["distill_over_student"]["q1"]:.3f}, {d["distill_over_student"]["q3"]:.3f}]'
          + (f' (the distill step reads a teacher cache: {r["teacher_cache"]})'
             if r.get('teacher_cache') else ''))
    for phase, parts in r.get('parts_ms', {}).items():
        print(f'parts of the {phase} step (median ms): ' + ', '.join(
            f'{k} {v["median"]:.2f}' for k, v in parts.items()))


def table(results) -> str:
    lines = [
        '| config | method | batch | student ms | teacher fwd ms | methods ms | distill ms | '
        'time ratio d/(s+t) | remainder ms | remainder % of distill | memory MiB s / t / m / d '
        '| memory ratio |', '|' + '---|' * 12]
    for r in results:
        t = r['time_ms']
        d = r['derived']
        mem = ' / '.join(f'{r[f"{p}_mem_mib"]:.1f}' for p in PHASES)
        lines.append(
            f'| {osp.basename(osp.dirname(r["config"]))} `{osp.splitext(osp.basename(r["config"]))[0]}` '
            f'| {", ".join(r["methods"])} | {r["batch_size"]} × {"×".join(map(str, r["input_shape"]))} '
            f'| {fmt_spread(t["student"])} | {fmt_spread(t["teacher"])} '
            f'| {fmt_spread(t["methods"])} | {fmt_spread(t["distill"])} '
            f'| {fmt_spread(d["time_ratio"], 3)} | {fmt_spread(d["remainder_ms"], 2)} '
            f'| {fmt_spread(d["remainder_pct"], 1)} | {mem} | {r["memory_ratio"]:.3f} |')
    return '\n'.join(lines)


def json_name(config) -> str:
    return f'overhead_{osp.splitext(osp.basename(config))[0]}.json'


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config', nargs='?', help='a distillation config (or use --all-demo)')
    parser.add_argument('--all-demo', action='store_true',
                        help='every distillation config under configs/demo/, one process each')
    parser.add_argument('--steps', type=int, default=30, help='timed rounds')
    parser.add_argument('--warmup', type=int, default=10, help='untimed rounds first')
    parser.add_argument('--batch-size', type=int, default=None,
                        help='override the train dataloader batch size')
    parser.add_argument('--device', default=None, help='cpu or cuda (default: cuda if any)')
    parser.add_argument('--random-teacher', action='store_true')
    parser.add_argument('--order', choices=('shuffle', 'fixed'), default='shuffle',
                        help='phase order within a round (default: shuffled every round)')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch intra-op threads (default: torch\'s own choice)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--breakdown', action='store_true',
                        help='also time the parts of each step (teacher, student, methods, '
                        'non-finite check, backward, optimizer, other)')
    parser.add_argument('--teacher-cache', choices=('fp32', 'fp16'), default=None,
                        help='the distill phase reads its frozen teachers from a cache of the '
                        'batch stored in this precision (as tools/cache_teacher.py writes '
                        'it); the teacher phase still runs the live teacher')
    parser.add_argument('--teacher-cache-topk', type=int, default=None,
                        help='with --teacher-cache: keep the top K logits only')
    parser.add_argument('--out', help='also write the results as JSON here (with --all-demo: '
                        'a list, one entry per config)')
    parser.add_argument('--out-dir', help='with --all-demo: write overhead_<config>.json here')
    parser.add_argument('--demo-root', default=DEMO,
                        help='with --all-demo: the folder searched (default: configs/demo)')
    args = parser.parse_args()
    if bool(args.config) == args.all_demo:
        parser.error('give a CONFIG or --all-demo (not both)')
    if args.steps < 1 or args.warmup < 0:
        parser.error('--steps must be >= 1 and --warmup >= 0')
    if args.teacher_cache_topk is not None and not args.teacher_cache:
        parser.error('--teacher-cache-topk needs --teacher-cache')
    cache = None if args.teacher_cache is None else dict(dtype=args.teacher_cache,
                                                          topk=args.teacher_cache_topk)
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')

    if not args.all_demo:
        result = run_config(args.config, device, args.steps, args.warmup, args.random_teacher,
                            args.batch_size, args.order, args.seed, args.breakdown, cache)
        print_report(result)
        if args.out:
            with open(args.out, 'w') as f:
                json.dump(result, f, indent=1)
        return

    configs = demo_distill_configs(args.demo_root)
    if not configs:
        sys.exit(f'no distillation config under {args.demo_root}')
    load_before = os.getloadavg()
    results, failed = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i, config in enumerate(configs):
            out = osp.join(tmp, json_name(config))
            cmd = [sys.executable, osp.abspath(__file__), config, '--steps', str(args.steps),
                   '--warmup', str(args.warmup), '--device', device, '--order', args.order,
                   '--seed', str(args.seed), '--out', out]
            for flag, value in (('--batch-size', args.batch_size), ('--threads', args.threads)):
                if value:
                    cmd += [flag, str(value)]
            cmd += [flag for flag, on in (('--random-teacher', args.random_teacher),
                                          ('--breakdown', args.breakdown)) if on]
            print(f'[{i + 1}/{len(configs)}] {config}', flush=True)
            proc = subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True,
                                  env=dict(os.environ, PYTHONWARNINGS='ignore'))
            if proc.returncode != 0 or not osp.isfile(out):
                failed.append(config)
                print(f'  failed:\n{proc.stdout[-4000:]}', flush=True)
                continue
            with open(out) as f:
                results.append(json.load(f))
            report = proc.stdout[proc.stdout.rfind('config: '):]  # the child's report
            print(report.rstrip() + '\n', flush=True)
            if args.out_dir:
                os.makedirs(args.out_dir, exist_ok=True)
                with open(osp.join(args.out_dir, json_name(config)), 'w') as f:
                    json.dump(results[-1], f, indent=1)
    print(table(results))
    print(f'load average (1 min): {load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after')
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(results, f, indent=1)
    if failed:
        sys.exit(f'{len(failed)} config(s) failed: {failed}')


if __name__ == '__main__':
    main()
