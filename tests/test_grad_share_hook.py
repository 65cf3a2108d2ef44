"""mmkd.GradientShareHook (issue 33, item 4): gradient norms, shares and cosines per loss term
over training. By hand on a tiny model; on the digits KD demo config in process: the logged
values equal the shared core (mmkd.analysis.grad_shares) on the same batch and weights, the
interval is respected, a run with the hook ends bit-identical to one without it, and
tools/analysis/plot_curves.py plots the logged keys.

    OMP_NUM_THREADS=1 python tests/test_grad_share_hook.py --timing   # the cost, printed
"""
import copy
import glob
import importlib.util
import json
import math
import os.path as osp
import sys
import time
import uuid

import pytest
import torch
from mmengine.hooks import Hook

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from conftest import DIGITS, REPO, random_teacher_checkpoint  # noqa: E402

import mmkd  # noqa: E402,F401
import mmkd.hooks.grad_share_hook  # noqa: E402,F401
from mmkd.analysis.grad_shares import gradient_stats, term_gradients, term_of  # noqa: E402
from mmkd.hooks.grad_share_hook import GradientShareHook  # noqa: E402
from mmkd.hooks.random_state import capture_random_state, restore_random_state  # noqa: E402

PLOT_TOOL = osp.join(REPO, 'tools', 'analysis', 'plot_curves.py')


# ---------------------------------------------------------------------- by hand
def test_stats_and_keys_by_hand():
    """A 'student' of two parameters: backbone.w (2,) and head.v (1,)."""
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    v = torch.tensor([3.0], requires_grad=True)
    x = torch.tensor([1.0, -1.0])
    losses = {'student.loss_cls': (w * x).sum() + 2 * v.sum(),   # g_task = (1, -1 | 2)
              'distill.feat.loss_mse': -3 * (w * x).sum(),        # g_feat = (-3, 3 | 0)
              'distill.feat.weight': torch.tensor(1.0),           # not a loss
              'distill.out.loss_kd': 4 * v.sum(),                 # g_out = (0, 0 | 4)
              'peer.loss_cls': w.sum() * 7}                       # a trainable teacher's own
    assert term_of('peer.loss_cls') is None and term_of('distill.feat.weight') is None
    assert term_of('student.loss_cls') == 'task' and term_of('distill.x.loss_a') == 'distill.x'
    grads = term_gradients(losses, [w, v])
    assert set(grads) == {'task', 'distill.feat', 'distill.out'}
    stats = gradient_stats(grads, ['backbone.w', 'head.v'])
    n_task, n_feat, n_out = math.sqrt(6), math.sqrt(18), 4.0
    assert stats['task']['norm'] == pytest.approx(dict(all=n_task, backbone=math.sqrt(2),
                                                       head=2.0))
    assert stats['distill.feat']['norm'] == pytest.approx(dict(all=n_feat, backbone=n_feat,
                                                               head=0.0))
    total = n_task + n_feat + n_out
    for term, n in (('task', n_task), ('distill.feat', n_feat), ('distill.out', n_out)):
        assert stats[term]['share'] == pytest.approx(n / total)
    # cos((-3, 3, 0), (1, -1, 2)) = -6 / (sqrt(18) sqrt(6)); cos((0, 0, 4), (1, -1, 2)) = 8 /
    # (4 sqrt(6))
    assert stats['distill.feat']['cos_task'] == pytest.approx(-6 / (n_feat * n_task))
    assert stats['distill.out']['cos_task'] == pytest.approx(8 / (4 * n_task))
    assert stats['task']['cos_task'] is None
    keys = GradientShareHook.keys(stats)
    assert keys['grad/task/norm'] == pytest.approx(n_task)
    assert keys['grad/feat/cos_task'] == pytest.approx(-6 / (n_feat * n_task))
    assert keys['grad/out/share'] == pytest.approx(n_out / total)
    assert keys['grad/feat/norm.head'] == 0.0 and 'grad/task/cos_task' not in keys
    assert GradientShareHook.keys(gradient_stats(grads, ['backbone.w', 'head.v'],
                                                 by_part=False)).keys() == {
        'grad/task/norm', 'grad/task/share', 'grad/feat/norm', 'grad/feat/share',
        'grad/feat/cos_task', 'grad/out/norm', 'grad/out/share', 'grad/out/cos_task'}
    # No gradient at all: shares 0, not NaN.
    zero = {'task': [torch.zeros(2)], 'distill.a': [torch.zeros(2)]}
    assert gradient_stats(zero, ['head.w'])['distill.a']['share'] == 0.0


def test_model_state_puts_back_what_a_forward_changes():
    from mmkd.hooks.grad_share_hook import _ModelState

    class Stateful(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bn = torch.nn.BatchNorm1d(2)
            self.register_buffer('bank', torch.zeros(3))
            self.register_buffer('rebound', torch.ones(2))
            self.cache = torch.full((2,), 5.0)       # a tensor attribute, not a buffer
            self.count, self.flag = 0, None

        def forward(self, x):
            self.bank[1] = 7.0                       # written into
            self.rebound = torch.zeros(2)            # the buffer rebound to a new tensor
            self.register_buffer('extra', torch.ones(1))  # a new buffer
            self.cache.add_(1.0)
            self.count += 1
            self.flag, self.new_attr = 'seen', 3     # changed, and added
            return self.bn(x)

    model = Stateful().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rebound, cache = model.rebound, model.cache
    state = _ModelState([model])
    model(torch.randn(4, 2))
    assert model.bn.num_batches_tracked == 1 and model.count == 1
    state.restore()
    after = model.state_dict()
    assert after.keys() == before.keys()             # 'extra' is gone
    for key in before:
        assert torch.equal(after[key], before[key]), key
    assert model.rebound is rebound and model.cache is cache
    assert torch.equal(model.cache, torch.full((2,), 5.0))
    assert model.count == 0 and model.flag is None and not hasattr(model, 'new_attr')


def test_hook_arguments_are_checked():
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match='interval must be an integer >= 1'):
            GradientShareHook(interval=bad)
    with pytest.raises(TypeError, match='by_part must be True or False'):
        GradientShareHook(by_part='yes')
    from mmkd.registry import HOOKS
    assert isinstance(HOOKS.build(dict(type='mmkd.GradientShareHook', interval=3)),
                      GradientShareHook)


def _schedule(interval, epoch_length, epochs, logger_interval=None, start=0):
    """The iterations (from 1) the hook measures, and the keys left in the message hub after
    each, for a fake runner; ``measure`` stubbed."""
    from types import SimpleNamespace

    from mmengine.hooks import LoggerHook
    from mmengine.logging import MessageHub
    hooks = [] if logger_interval is None else [LoggerHook(interval=logger_interval)]
    runner = SimpleNamespace(model=None, hooks=hooks, train_dataloader=range(epoch_length),
                             iter=start, cfg=None,
                             message_hub=MessageHub.get_instance(f'gsh_{uuid.uuid4().hex}'))
    hook = GradientShareHook(interval=interval)
    hook.measure = lambda runner, data: {'grad/task/norm': float(runner.iter + 1)}
    hook._next = (start // interval + 1) * interval  # as before_train sets it
    measured, left = [], []
    for it in range(start, epoch_length * epochs):
        runner.iter = it
        hook.before_train_iter(runner, it % epoch_length, data_batch={})
        if hook.last is not None and hook.last['grad/task/norm'] == it + 1:
            measured.append(it + 1)
        hook.after_train_iter(runner, it % epoch_length)
        left.append('train/grad/task/norm' in runner.message_hub.log_scalars)
    return measured, left


def test_measured_iterations_are_logged_ones():
    # Iteration-based counting (one long epoch), logger every 5: every 10th iteration.
    measured, left = _schedule(10, 40, 1, logger_interval=5)
    assert measured == [10, 20, 30, 40] and not any(left)  # written, then removed
    # Epoch-based, 3 iterations an epoch, LoggerHook every 2 within the epoch, skipping the
    # epoch's last (ignore_last): it writes iterations 2, 5, 8, 11 only. Interval 2: the first
    # logged iteration at or after 2, 4, 6, ... -> 2, 5, 8, 11.
    measured, _ = _schedule(2, 3, 4, logger_interval=2)
    assert measured == [2, 5, 8, 11]
    # Interval 4 there: due at 4 -> logged 5; due at 8 -> 8; due at 12: never logged.
    measured, _ = _schedule(4, 3, 4, logger_interval=2)
    assert measured == [5, 8]
    # Without a LoggerHook: every interval-th iteration, kept in the message hub.
    measured, left = _schedule(3, 10, 1)
    assert measured == [3, 6, 9] and left[2]
    # Resumed at iteration 20 with interval 10: the next is 30.
    measured, _ = _schedule(10, 40, 1, logger_interval=5, start=20)
    assert measured == [30, 40]


# ---------------------------------------------------------------------- in a runner
@pytest.fixture(scope='module')
def teacher(tmp_path_factory):
    root = tmp_path_factory.mktemp('gsh_teacher')
    return random_teacher_checkpoint(DIGITS['teacher'], str(root / 'teacher.pth'))


class _Spy(Hook):
    """Before every hook of an iteration: the batch, the weights and the RNG states."""
    priority = 'HIGHEST'

    def __init__(self):
        self.seen = []

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        model = runner.model
        self.seen.append(dict(iter=runner.iter, batch=copy.deepcopy(data_batch),
                              state=copy.deepcopy(model.state_dict()),
                              rng=capture_random_state()))


def build_runner(work_dir, teacher, hook=None, spy=None, iters_per_epoch=2, epochs=2,
                 log_interval=1, batch_size=16, config=None, mixup=True):
    """The digits KD demo config in process: ``epochs`` x ``iters_per_epoch`` iterations of
    ``batch_size`` images, a log record every ``log_interval`` iterations, one validation (on
    8 images) at the end. With ``mixup``, mmpretrain's Mixup batch augmentation in the data
    preprocessor: it draws from NumPy's and torch's generators at every forward and writes the
    mixed labels into the data samples, which the hook must both undo."""
    from mmengine.runner import Runner

    from mmkd.utils.tool_config import load_tool_config
    n = iters_per_epoch * batch_size
    options = {} if teacher is None else {'model.teacher.checkpoint': teacher}
    cfg = load_tool_config(config or DIGITS['distill'], 'none', {
        **options, 'train_dataloader.batch_size': batch_size,
        'train_dataloader.dataset.indices': n, 'train_cfg.max_epochs': epochs,
        'train_cfg.val_interval': 1000, 'val_dataloader.dataset.indices': 8,
        'default_hooks.logger.interval': log_interval,
        'default_hooks.checkpoint.interval': 1000, 'default_hooks.checkpoint.save_last': False,
        'param_scheduler.T_max': epochs}, str(work_dir))
    if mixup:
        cfg.data_preprocessor.batch_augments = dict(augments=[dict(type='Mixup', alpha=1.0)])
    cfg.experiment_name = f'gsh_{uuid.uuid4().hex[:8]}'  # one visualizer and hub per run
    hooks = []
    if hook is not None:
        hooks.append(hook)
    cfg.custom_hooks = hooks
    runner = Runner.from_cfg(cfg)
    if spy is not None:
        runner.register_hook(spy, priority='HIGHEST')
    return runner


def scalars(work_dir):
    (path,) = glob.glob(osp.join(str(work_dir), '*', 'vis_data', 'scalars.json'))
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope='module')
def hooked_run(tmp_path_factory, teacher):
    """4 iterations (2 epochs of 2) with the hook at interval 2, logging every iteration."""
    work = tmp_path_factory.mktemp('gsh_hooked')
    spy = _Spy()
    runner = build_runner(work, teacher, dict(type='mmkd.GradientShareHook', interval=2),
                          spy=spy)
    runner.train()
    hook = [h for h in runner.hooks if isinstance(h, GradientShareHook)][0]
    # The final state is kept now: a test below loads earlier weights into the model.
    return dict(work=work, runner=runner, spy=spy, hook=hook,
                final=_weights_and_optimiser(runner))


def test_interval_and_logged_values_equal_the_core(hooked_run):
    records = [r for r in scalars(hooked_run['work']) if 'iter' in r]
    assert [r['iter'] for r in records] == [1, 2, 3, 4]
    # Measured at iterations 2 and 4 (counted from 1), written in their own records only.
    with_grad = [r['iter'] for r in records if any(k.startswith('grad/') for k in r)]
    assert with_grad == [2, 4]
    last = records[-1]
    assert {k for k in last if k.startswith('grad/')} == {
        'grad/task/norm', 'grad/task/share', 'grad/logits/norm', 'grad/logits/share',
        'grad/logits/cos_task', 'grad/task/norm.backbone', 'grad/task/norm.head',
        'grad/logits/norm.backbone', 'grad/logits/norm.head'}
    assert last['grad/task/share'] + last['grad/logits/share'] == pytest.approx(1, abs=1e-3)
    assert -1 <= last['grad/logits/cos_task'] <= 1
    # norm^2 = sum of the parts' norm^2 (the parts partition the student's parameters).
    assert last['grad/logits/norm'] ** 2 == pytest.approx(
        last['grad/logits/norm.backbone'] ** 2 + last['grad/logits/norm.head'] ** 2, rel=1e-3)

    # The hook's last measurement, recomputed with the core on the same batch, weights and
    # random states (the spy saved them before any hook of iteration 4): equal, bit for bit.
    runner, hook = hooked_run['runner'], hooked_run['hook']
    seen = hooked_run['spy'].seen[3]
    assert seen['iter'] == 3
    model = runner.model
    model.load_state_dict(seen['state'])
    model.train()  # the run ended with a validation (eval mode)
    restore_random_state(seen['rng'])
    data = model.data_preprocessor(copy.deepcopy(seen['batch']), True)
    losses = model(**data, mode='loss')
    named = [(n, p) for n, p in model.student.named_parameters() if p.requires_grad]
    stats = gradient_stats(term_gradients(losses, [p for _, p in named]), [n for n, _ in named])
    assert hook.last == GradientShareHook.keys(stats)
    # The JSON log holds them (LoggerHook's rounding aside).
    for key, value in hook.last.items():
        assert last[key] == pytest.approx(value, rel=1e-4, abs=1e-7), key


def test_plot_curves_plots_the_logged_keys(hooked_run, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location('plot_curves', PLOT_TOOL)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    work = str(hooked_run['work'])
    plotted = tool.main([work, '--grad', '--out', str(tmp_path / 'grad.png')])
    assert plotted == {tool.PANELS[3]: ['grad/task/norm', 'grad/logits/norm'],
                       tool.PANELS[4]: ['grad/task/share', 'grad/logits/share'],
                       tool.PANELS[5]: ['grad/logits/cos_task']}
    import matplotlib.image
    image = matplotlib.image.imread(str(tmp_path / 'grad.png'))
    assert osp.getsize(tmp_path / 'grad.png') > 10_000 and image.std() > 0.05
    # The curve joins the measured points only (iterations 2 and 4).
    train, _ = tool.read_scalars(glob.glob(osp.join(work, '*', 'vis_data',
                                                    'scalars.json'))[0])
    xs, _ = tool.series(train, [r['iter'] for r in train], 'grad/logits/cos_task')
    assert xs == [2, 4]
    # Per-part norms on request; the defaults hold the whole-student grad keys with the losses.
    plotted = tool.main([work, '--grad', 'grad/*/norm.*', '--out', str(tmp_path / 'p.png')])
    assert 'grad/logits/norm.backbone' in plotted[tool.PANELS[3]]
    plotted = tool.main([work, '--out', str(tmp_path / 'd.png')])
    assert plotted[tool.PANELS[5]] == ['grad/logits/cos_task']
    assert 'distill.logits.loss_kd' in plotted[tool.PANELS[0]]
    assert not any('norm.' in k for keys in plotted.values() for k in keys)
    assert "plotted [cosine with the task gradient" in capsys.readouterr().out


def test_plot_curves_grad_on_a_run_without_the_hook(tmp_path):
    spec = importlib.util.spec_from_file_location('plot_curves', PLOT_TOOL)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    vis = tmp_path / '20260101_000000' / 'vis_data'
    vis.mkdir(parents=True)
    (vis / 'scalars.json').write_text('{"loss": 1.0, "iter": 1, "step": 1}\n')
    with pytest.raises(SystemExit, match=r"--grad: no gradient-share keys .*GradientShareHook"):
        tool.main([str(tmp_path), '--grad'])


def _weights_and_optimiser(runner):
    return (copy.deepcopy(runner.model.state_dict()),
            copy.deepcopy(runner.optim_wrapper.state_dict()))


def _tensors(tree, prefix=''):
    """{path: tensor} of a nested state dict (an optimiser's, or OptimWrapperDict's)."""
    if isinstance(tree, torch.Tensor):
        return {prefix: tree}
    if isinstance(tree, dict):
        return {k: v for key, sub in tree.items() for k, v in _tensors(sub, f'{prefix}/{key}')
                .items()}
    if isinstance(tree, (list, tuple)):
        return {k: v for i, sub in enumerate(tree) for k, v in _tensors(sub, f'{prefix}/{i}')
                .items()}
    return {}


def _assert_identical(a, b):
    (wa, oa), (wb, ob) = a, b
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key   # bit-identical, buffers included
    ta, tb = _tensors(oa), _tensors(ob)
    assert ta.keys() == tb.keys() and any('momentum_buffer' in k for k in ta)
    for key in ta:
        assert torch.equal(ta[key], tb[key]), key


def test_a_run_with_the_hook_is_bit_identical_to_one_without(hooked_run, tmp_path, teacher):
    """The key test: 4 iterations across an epoch boundary (the data order and RandomCrop draw
    from the generators the hook restores), BatchNorm in the student, measured at iterations
    2 and 4, against the same run without the hook."""
    plain = build_runner(tmp_path / 'plain', teacher)
    plain.train()
    _assert_identical(_weights_and_optimiser(plain), hooked_run['final'])
    # The logged losses agree too, iteration by iteration.
    a = [r for r in scalars(hooked_run['work']) if 'iter' in r]
    b = [r for r in scalars(tmp_path / 'plain') if 'iter' in r]
    assert [r['loss'] for r in a] == [r['loss'] for r in b]


def test_trainable_teacher_with_its_own_optimiser(tmp_path):
    """Deep mutual learning (a trainable peer, OptimWrapperDict): only the student's
    parameters are measured; the block teaching the peer and the peer's own loss are no terms;
    the student and the peer (weights, BatchNorm statistics, both optimisers) end as without
    the hook."""
    config = osp.join(REPO, 'configs', 'demo', 'digits', 'dml_resnet18-tiny_digits.py')
    runs = []
    for name, hook in (('plain', None), ('hooked', dict(type='mmkd.GradientShareHook',
                                                        interval=1, by_part=False))):
        runner = build_runner(tmp_path / name, None, hook, config=config, epochs=1)
        runner.train()
        runs.append(_weights_and_optimiser(runner))
    assert any(k.startswith('trainable_teachers.peer.') for k in runs[0][0])  # compared too
    assert set(runs[0][1]) == {'student', 'peer'}
    _assert_identical(*runs)
    records = [r for r in scalars(tmp_path / 'hooked') if 'iter' in r]
    assert {k for k in records[-1] if k.startswith('grad/')} == {
        'grad/task/norm', 'grad/task/share', 'grad/from_peer/norm', 'grad/from_peer/share',
        'grad/from_peer/cos_task'}


@pytest.mark.slow
def test_exact_with_diffkd_measured_every_iteration(tmp_path, teacher):
    """DiffKD draws timesteps and noise in its forward and normalises with BatchNorm in its
    own modules: measured at every iteration, the run still ends bit-identical."""
    config = osp.join(REPO, 'configs', 'demo', 'digits',
                      'diffkd_resnet34-wide_resnet18-tiny_digits.py')
    runs = []
    for name, hook in (('plain', None), ('hooked', dict(type='mmkd.GradientShareHook',
                                                        interval=1))):
        runner = build_runner(tmp_path / name, teacher, hook, config=config, mixup=False)
        runner.train()
        runs.append(_weights_and_optimiser(runner))
    _assert_identical(*runs)


def test_refuses_a_plain_student():
    from types import SimpleNamespace
    runner = SimpleNamespace(model=torch.nn.Linear(2, 2), hooks=[],
                             cfg=dict(model=dict(type='ImageClassifier')))
    with pytest.raises(TypeError, match=r"this run's model is Linear \(model.type="
                                        r"'ImageClassifier'\), not an mmkd.Distiller"):
        GradientShareHook(interval=1).before_train(runner)


# ---------------------------------------------------------------------- cost
def timing(iters=60, interval=4):
    """Seconds per ordinary and per measured iteration on the digits KD config (batch 64)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        teacher_path = random_teacher_checkpoint(DIGITS['teacher'], osp.join(tmp, 't.pth'))
        runner = build_runner(osp.join(tmp, 'w'), teacher_path,
                              dict(type='mmkd.GradientShareHook', interval=interval),
                              iters_per_epoch=iters, epochs=1, log_interval=interval,
                              batch_size=64, mixup=False)
        times = {}

        class Clock(Hook):
            def before_train_iter(self, runner, batch_idx, data_batch=None):
                self.start = time.perf_counter()

            def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
                times[runner.iter] = time.perf_counter() - self.start

        clock = Clock()
        runner.register_hook(clock, priority='HIGHEST')
        runner.train()
    measured = sorted(t for i, t in times.items() if (i + 1) % interval == 0 and i > 0)
    plain = sorted(t for i, t in times.items() if (i + 1) % interval and i > 0)
    return plain[len(plain) // 2], measured[len(measured) // 2]


if __name__ == '__main__' and '--timing' in sys.argv:
    torch.set_num_threads(1)
    plain, measured = timing()
    print(f'digits KD, batch 64, {torch.get_num_threads()} thread(s): ordinary iteration '
          f'{plain:.3f} s, measured iteration {measured:.3f} s ({measured / plain:.2f}x); '
          f'interval 50 adds {(measured - plain) / (50 * plain):.1%}')
