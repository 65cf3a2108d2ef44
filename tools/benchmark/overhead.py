"""What distillation costs beyond the teacher's forward and the method's own modules.

    python tools/benchmark/overhead.py CONFIG [--steps 30] [--warmup 10] [--device cpu|cuda]

For a distillation config, on one real batch from its train dataloader, measures in one run:

- student step: the student alone (forward with its task losses, backward, SGD step);
- teacher step: the teacher's forward exactly as the distiller runs it (no grad, eval mode,
  stopped after the deepest recorded module);
- distill step: the distiller's full training step (teacher forward, student, blocks,
  backward, SGD step over student and method parameters);

each as the median of ``--steps`` timed steps after ``--warmup`` untimed ones, with the peak
memory of each: resident weights and optimizer state, plus the peak of what the step allocates
on top (CUDA: ``max_memory_allocated``; CPU: the running sum of the torch profiler's allocation
and free events over one step). Each phase runs in its own fresh process. Prints the ratios
``distill / (student + teacher)`` for time and memory. A ratio near 1 means distillation adds
little beyond running both models; the remainder is the methods' own modules.

With ``--random-teacher`` (default when the checkpoint is a URL or missing), the teacher gets
random weights of the right architecture: speed and memory do not depend on the values.
"""
import argparse
import json
import os
import os.path as osp
import statistics
import subprocess
import sys
import tempfile
import time

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)


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


def build(config, device, random_teacher, batch_size):
    import torch
    from mmengine.config import Config
    from mmengine.registry import MODELS as ROOT
    from mmengine.registry import DefaultScope
    from mmengine.runner import Runner

    import mmkd  # noqa: F401
    from mmkd.distillers import resolve_config_path
    cfg = Config.fromfile(resolve_config_path(config))
    model_cfg = cfg.model
    ckpt = model_cfg.teacher.checkpoint
    if random_teacher or ckpt.startswith(('http://', 'https://')) or not osp.isfile(ckpt):
        from mmkd.distillers import (build_model_in_scope, load_model_config,
                                     without_pretrained)
        t_cfg, scope = load_model_config(model_cfg.teacher.config)
        teacher = build_model_in_scope(without_pretrained(t_cfg), scope)
        path = osp.join(tempfile.mkdtemp(), 'random_teacher.pth')
        torch.save(dict(state_dict=teacher.state_dict()), path)
        model_cfg.teacher.checkpoint = path
    if cfg.get('data_preprocessor'):
        model_cfg.data_preprocessor = cfg.data_preprocessor
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        distiller = ROOT.build(model_cfg)
        loader_cfg = cfg.train_dataloader
        loader_cfg.num_workers = 0
        loader_cfg.persistent_workers = False
        if batch_size:
            loader_cfg.batch_size = batch_size
        loader = Runner.build_dataloader(loader_cfg, seed=0)
        data = next(iter(loader))
    distiller.to(device)
    data = distiller.data_preprocessor(data, training=True)
    return distiller, data


def run_phase(phase, config, device, steps, warmup, random_teacher, batch_size):
    import torch
    distiller, data = build(config, device, random_teacher, batch_size)
    distiller.train()
    inputs, samples = data['inputs'], data['data_samples']
    cuda = device.startswith('cuda')

    if phase == 'student':
        params = [p for p in distiller.student.parameters() if p.requires_grad]
    else:
        params = [p for p in distiller.parameters() if p.requires_grad]
    optim = torch.optim.SGD(params, lr=1e-4, momentum=0.9)

    def step():
        if phase == 'teacher':
            with torch.no_grad():
                distiller._record(distiller.teacher_recorder, distiller.teacher, inputs, samples)
            distiller.teacher_recorder.data = {}
            return
        model = distiller.student if phase == 'student' else distiller
        losses = model(inputs, samples, mode='loss')
        loss, _ = distiller.parse_losses(losses)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()

    for _ in range(warmup):
        step()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated() / 2 ** 20
    times = []
    for _ in range(steps):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        step()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    step_peak = (torch.cuda.max_memory_allocated() / 2 ** 20 - base if cuda
                 else cpu_step_peak_mib(step))
    # What the phase keeps resident between steps: its weights and the optimizer's state.
    resident = (sum(p.numel() * p.element_size() for m in _phase_modules(distiller, phase)
                    for p in m.parameters()) +
                sum(t.numel() * t.element_size() for st in optim.state.values()
                    for t in st.values() if torch.is_tensor(t))) / 2 ** 20
    return dict(phase=phase, median_s=statistics.median(times), mem_mib=resident + step_peak,
                step_peak_mib=step_peak, resident_mib=resident,
                batch_size=int(inputs.shape[0]), input_shape=list(inputs.shape[1:]))


def _phase_modules(distiller, phase):
    if phase == 'student':
        return [distiller.student]
    if phase == 'teacher':
        return [distiller.teacher]
    return [distiller.student, distiller.teacher, distiller.methods]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config')
    parser.add_argument('--steps', type=int, default=30)
    parser.add_argument('--warmup', type=int, default=10)
    parser.add_argument('--batch-size', type=int, default=None,
                        help='override the train dataloader batch size')
    parser.add_argument('--device', default=None, help='cpu or cuda (default: cuda if any)')
    parser.add_argument('--random-teacher', action='store_true')
    parser.add_argument('--out', help='also write the results as JSON here')
    parser.add_argument('--phase', help=argparse.SUPPRESS)  # internal: one phase per process
    args = parser.parse_args()
    import torch
    device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')

    if args.phase:
        res = run_phase(args.phase, args.config, device, args.steps, args.warmup,
                        args.random_teacher, args.batch_size)
        print('RESULT ' + json.dumps(res))
        return

    results = {}
    for phase in ('student', 'teacher', 'distill'):
        cmd = [sys.executable, osp.abspath(__file__), args.config, '--phase', phase,
               '--steps', str(args.steps), '--warmup', str(args.warmup), '--device', device]
        if args.batch_size:
            cmd += ['--batch-size', str(args.batch_size)]
        if args.random_teacher:
            cmd.append('--random-teacher')
        proc = subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, env=dict(os.environ, PYTHONWARNINGS='ignore'))
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith('RESULT ')]
        if proc.returncode != 0 or not lines:
            sys.exit(f'phase {phase} failed:\n{proc.stdout[-4000:]}')
        results[phase] = json.loads(lines[-1][len('RESULT '):])

    s, t, d = results['student'], results['teacher'], results['distill']
    time_ratio = d['median_s'] / (s['median_s'] + t['median_s'])
    mem_ratio = d['mem_mib'] / (s['mem_mib'] + t['mem_mib'])
    summary = dict(config=args.config, device=device, steps=args.steps, warmup=args.warmup,
                   batch_size=s['batch_size'], input_shape=s['input_shape'], **{
                       f'{k}_{m}': results[k][m] for k in results for m in ('median_s',
                                                                            'mem_mib')},
                   time_ratio=time_ratio, memory_ratio=mem_ratio)
    print(f'config: {args.config}')
    print(f'device: {device}, batch {s["batch_size"]} x {s["input_shape"]}, median of '
          f'{args.steps} steps after {args.warmup} warm-up')
    print(f'| step | median time (ms) | peak memory (MiB) |\n|---|---|---|')
    for name, r in (('student only (fwd+bwd+step)', s), ('teacher forward (as distilled)', t),
                    ('distillation (fwd+bwd+step)', d)):
        print(f'| {name} | {r["median_s"] * 1e3:.1f} | {r["mem_mib"]:.1f} |')
    print(f'time ratio   distill / (student + teacher) = {time_ratio:.3f}')
    print(f'memory ratio distill / (student + teacher) = {mem_ratio:.3f}')
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(summary, f, indent=1)


if __name__ == '__main__':
    main()
