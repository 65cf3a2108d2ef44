"""Sharded training (FSDP2) of the distiller: mmkd.DistillerFSDP and mmkd.DistillerFSDPHook.

Fast tests run in this process with a gloo group of one rank (FSDP2's whole code path: DTensor
parameters, unit hooks, reduce-scatter, full-state gathering, with one shard); the launched
tests run tools/train.py with 2 gloo processes (tools/dist_train.sh), the FSDP run against
the same run under DDP and against itself resumed from its first checkpoint.
"""
import copy
import os.path as osp
import socket

import pytest
import torch
import torch.distributed as dist
from mmengine.optim import OptimWrapper

import mmkd.distillers.fsdp  # noqa: F401  (registers the wrapper and the hook)
from conftest import DIGITS, batch, build, digits_cfg
from mmkd.distillers.fsdp import DistillerFSDP, DistillerFSDPHook

#: A feature block with a connector (parameters: a sharded method unit) and logit KD.
BLOCKS = dict(
    stage4=dict(student='backbone.layer4', teacher='backbone.layer4',
                method=dict(type='FeatureMSE'), loss_weight=1.0),
    logits=dict(student='head.fc', teacher='head.fc', method=dict(type='LogitKD', tau=4.0),
                loss_weight=1.0))
#: FSDP against DDP / unsharded: the same arithmetic but for the order of the gradient
#: reduction (reduce-scatter vs all-reduce) and of the optimiser's per-shard updates, after
#: a few SGD steps from the same start. Measured max abs difference: see the report.
ATOL, RTOL = 1e-5, 1e-4


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


@pytest.fixture(scope='module')
def one_rank_group():
    """A gloo process group of this process alone, for the module's in-process tests."""
    assert not dist.is_initialized()
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{free_port()}', rank=0,
                            world_size=1)
    yield
    dist.destroy_process_group()


def distiller(teacher_ckpt, seed=0, **overrides):
    torch.manual_seed(seed)
    return build(digits_cfg(teacher_ckpt, blocks=copy.deepcopy(BLOCKS), **overrides))


def sgd(model):
    return OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9,
                                        weight_decay=5e-4))


def data(seed, n=8):
    torch.manual_seed(seed)
    inputs, samples = batch(n=n, size=16)
    return dict(inputs=inputs, data_samples=samples)


def full(value):
    return value.full_tensor() if hasattr(value, 'full_tensor') else value


def params(model):
    return {k: full(p).detach().clone() for k, p in model.named_parameters()}


# ---------------------------------------------------------------------- configuration errors
def test_config_errors_name_the_valid_choices(one_rank_group, teacher_ckpts):
    d = distiller(teacher_ckpts['digits'])
    with pytest.raises(TypeError, match=r"unknown key\(s\) \['shard_unit'\]; valid keys are "
                       r"\['shard_units', 'reshard_after_forward', 'device_ids'\]"):
        DistillerFSDP(d, shard_unit='whole')
    with pytest.raises(ValueError, match=r"shard_units='child': valid values are "
                       r"\['whole', 'children'\] or a non-empty list of module class names"):
        DistillerFSDP(d, shard_units='child')
    with pytest.raises(TypeError, match='shard_units=\\[\\]: valid values'):
        DistillerFSDP(d, shard_units=[])
    with pytest.raises(ValueError, match=r"class\(es\) \['ResBlock'\] in \['student'\]; the "
                       r"classes there are \[.*'BasicBlock'.*'ResLayer'.*\]"):
        DistillerFSDP(d, shard_units=['ResLayer', 'ResBlock'])
    with pytest.raises(TypeError, match='reshard_after_forward=1: valid values are True and '
                       'False'):
        DistillerFSDP(d, reshard_after_forward=1)
    with pytest.raises(TypeError, match='wraps an mmkd Distiller, got Linear'):
        DistillerFSDP(torch.nn.Linear(2, 2))
    own_step = copy.copy(d)  # a subclass with a train_step of its own (as the data-free one)
    own_step.__class__ = type('OwnStepDistiller', (type(d),), dict(train_step=lambda *a: {}))
    with pytest.raises(TypeError, match='OwnStepDistiller has a train_step of its own .* '
                       'train it with mmkd.DistillerDataParallel'):
        DistillerFSDP(own_step)
    # None of the refusals above sharded anything.
    assert not any(hasattr(p, 'full_tensor') for p in d.parameters())


def test_needs_a_process_group(teacher_ckpts, monkeypatch):
    d = distiller(teacher_ckpts['digits'])
    # As in a single process without a group, whichever tests ran before in this worker.
    monkeypatch.setattr(mmkd.distillers.fsdp.torch_dist, 'is_initialized', lambda: False)
    with pytest.raises(RuntimeError, match='needs an initialised process group: launch with '
                       'tools/dist_train.sh'):
        DistillerFSDP(d)


@pytest.mark.parametrize('units,expected', [
    ('whole', ['student', 'methods.stage4']),
    ('children', ['student.backbone', 'student.head', 'student', 'methods.stage4']),
    (['ResLayer'], [f'student.backbone.layer{i}' for i in (4, 3, 2, 1)]
     + ['student', 'methods.stage4'])])
def test_units(one_rank_group, teacher_ckpts, units, expected):
    """Which modules become FSDP units, the distiller being the root; frozen teachers none."""
    from torch.distributed.fsdp import FSDPModule
    d = distiller(teacher_ckpts['digits'])
    wrapper = DistillerFSDP(d, shard_units=units)
    names = {id(m): n for n, m in d.named_modules()}
    sharded = [names[id(m)] for m in d.modules() if isinstance(m, FSDPModule)]
    assert sorted(sharded) == sorted([''] + expected)
    assert wrapper.units == len(expected) + 1
    assert all(hasattr(p, 'full_tensor') for p in d.parameters())  # every parameter sharded
    assert not any(hasattr(p, 'full_tensor') for p in d.teacher.parameters())


# ---------------------------------------------------------------------- steps, one rank
@pytest.mark.parametrize('reshard', [True, False])
def test_train_steps_equal_unsharded(one_rank_group, teacher_ckpts, reshard):
    """Same start (initialised before sharding) and the same weights after 3 steps of SGD
    with momentum as the unsharded distiller's own train_step; val_step predicts the same."""
    plain = distiller(teacher_ckpts['digits'])
    plain.init_weights()
    d = distiller(teacher_ckpts['digits'])
    wrapper = DistillerFSDP(d, shard_units='children', reshard_after_forward=reshard)
    hook_bound(wrapper)
    start = params(plain)
    assert {k: torch.equal(v, start[k]) for k, v in params(d).items()} == \
        {k: True for k in start}
    ow_plain, ow = sgd(plain), sgd(wrapper)
    for step in range(3):
        log_plain = plain.train_step(data(step), ow_plain)
        log = wrapper.train_step(data(step), ow)
        assert log.keys() == log_plain.keys()
        for key in log:
            torch.testing.assert_close(log[key], log_plain[key], atol=ATOL, rtol=RTOL)
    after = params(d)
    assert any(not torch.equal(v, start[k]) for k, v in after.items())  # it trained
    for key, value in params(plain).items():
        torch.testing.assert_close(after[key], value, atol=ATOL, rtol=RTOL, msg=key)
    plain.eval()
    wrapper.eval()
    pred_plain = plain.val_step(data(9))
    pred = wrapper.val_step(data(9))
    torch.testing.assert_close(torch.stack([p.pred_score for p in pred]),
                               torch.stack([p.pred_score for p in pred_plain]),
                               atol=ATOL, rtol=RTOL)
    pred = wrapper.test_step(data(9))
    torch.testing.assert_close(torch.stack([p.pred_score for p in pred]),
                               torch.stack([p.pred_score for p in pred_plain]),
                               atol=ATOL, rtol=RTOL)


def hook_bound(wrapper):
    """What DistillerFSDPHook.before_run marks (the launched runs go through the hook)."""
    wrapper.checkpoint_hook_bound = True
    return wrapper


def test_nonfinite_skip_leaves_no_trace(one_rank_group, teacher_ckpts):
    """nonfinite_loss='skip' through the wrapper: a NaN batch changes no parameter, buffer or
    momentum and logs the skip; the next (finite) batch trains (a forward without backward
    leaves FSDP's state usable)."""
    d = distiller(teacher_ckpts['digits'], nonfinite_loss='skip')
    wrapper = hook_bound(DistillerFSDP(d))
    ow = sgd(wrapper)
    wrapper.train_step(data(0), ow)
    before = params(d)
    buffers = {k: b.clone() for k, b in d.named_buffers()}
    momentum = [full(s['momentum_buffer']).clone() for s in ow.optimizer.state.values()]
    bad = data(1)
    bad['inputs'][0, 0, 0, 0] = float('nan')
    log = wrapper.train_step(bad, ow)
    assert float(log['nonfinite_skips']) == 1.0 and d.nonfinite_skips == 1
    assert all(torch.equal(v, before[k]) for k, v in params(d).items())
    assert all(torch.equal(b, buffers[k]) for k, b in d.named_buffers())
    assert all(torch.equal(full(s['momentum_buffer']), m)
               for s, m in zip(ow.optimizer.state.values(), momentum))
    log = wrapper.train_step(data(2), ow)
    assert float(log['nonfinite_skips']) == 1.0 and d.nonfinite_consecutive == 0
    assert any(not torch.equal(v, before[k]) for k, v in params(d).items())


def test_gradient_accumulation_uses_no_sync(one_rank_group, teacher_ckpts, monkeypatch):
    """accumulative_counts=2: the first step of each pair runs in the wrapper's no_sync (no
    reduce-scatter; FSDP2 keeps the unsharded gradient), the second reduces and steps; the
    weights equal the unsharded distiller's with the same accumulation."""
    plain = distiller(teacher_ckpts['digits'])
    plain.init_weights()
    wrapper = hook_bound(DistillerFSDP(distiller(teacher_ckpts['digits'])))
    entered = []
    no_sync = wrapper.no_sync

    def counted():
        entered.append(True)
        return no_sync()
    monkeypatch.setattr(wrapper, 'no_sync', counted)

    def accumulating(model):
        return OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
                            accumulative_counts=2)
    ow_plain, ow = accumulating(plain), accumulating(wrapper)
    for step in range(4):
        plain.train_step(data(step), ow_plain)
        wrapper.train_step(data(step), ow)
    assert len(entered) == 2  # steps 1 and 3 of 4
    after = params(wrapper.module)
    for key, value in params(plain).items():
        torch.testing.assert_close(after[key], value, atol=ATOL, rtol=RTOL, msg=key)


def test_train_step_without_hook_and_init_after_sharding_refused(one_rank_group,
                                                                 teacher_ckpts):
    d = distiller(teacher_ckpts['digits'])
    wrapper = DistillerFSDP(d)
    with pytest.raises(RuntimeError, match=r"trains without its hook: add custom_hooks="
                       r"\[dict\(type='mmkd.DistillerFSDPHook'\)\]"):
        wrapper.train_step(data(0), sgd(wrapper))
    with pytest.raises(RuntimeError, match='initialised the weights before sharding them'):
        d.init_weights()


def test_full_state_round_trip(one_rank_group, teacher_ckpts):
    """The hook's save path (full tensors, unsharded layout: the keys, shapes and optimiser
    indices of the unsharded distiller's) and its load path (sharded again, loaded by
    MMEngine's load_state_dict and OptimWrapper.load_state_dict) give back the same model
    and optimiser state in a fresh sharded distiller."""
    from mmengine.runner.checkpoint import load_state_dict
    plain = distiller(teacher_ckpts['digits'])
    ow_plain = sgd(plain)
    plain.train_step(data(0), ow_plain)
    d = distiller(teacher_ckpts['digits'])
    wrapper = hook_bound(DistillerFSDP(d))
    ow = sgd(wrapper)
    wrapper.train_step(data(0), ow)
    state = wrapper.full_model_state()
    plain_state = plain.state_dict()
    assert list(state) == list(plain_state)
    assert all(type(v) is torch.Tensor and v.shape == plain_state[k].shape
               for k, v in state.items())
    optim = wrapper.full_optim_state(ow)[None]
    plain_optim = ow_plain.state_dict()['state']
    assert optim.keys() == plain_optim.keys()
    for i, values in optim.items():
        assert type(values['momentum_buffer']) is torch.Tensor
        assert values['momentum_buffer'].shape == plain_optim[i]['momentum_buffer'].shape

    fresh = distiller(teacher_ckpts['digits'], seed=1)
    fresh_wrapper = DistillerFSDP(fresh)
    fresh_ow = sgd(fresh_wrapper)
    assert any(not torch.equal(full(v), state[k]) for k, v in fresh.state_dict().items())
    saved_optim = ow.state_dict()
    saved_optim['state'] = optim
    load_state_dict(fresh, fresh_wrapper.shard_model_state(state), strict=True)
    fresh_ow.load_state_dict(fresh_wrapper.shard_optim_state(fresh_ow, saved_optim))
    assert all(torch.equal(full(v), state[k]) for k, v in fresh.state_dict().items())
    for i, p in enumerate(fresh_wrapper.parameters()):
        m = fresh_ow.optimizer.state[p]['momentum_buffer']
        assert hasattr(m, 'full_tensor') and torch.equal(full(m), optim[i]['momentum_buffer'])
    # Both then take the same step.
    wrapper.train_step(data(1), ow)
    fresh_wrapper.checkpoint_hook_bound = True
    fresh_wrapper.train_step(data(1), fresh_ow)
    assert all(torch.equal(full(v), full(d.state_dict()[k]))
               for k, v in fresh.state_dict().items())


def dml(seed=0):
    """The digits mutual-learning distiller (a trainable peer: its own FSDP unit) and its two
    optimisers (mmkd.DistillerOptimWrapperConstructor's OptimWrapperDict)."""
    from mmengine.config import Config
    from mmengine.optim import OptimWrapperDict
    cfg = Config.fromfile(osp.join(osp.dirname(DIGITS['distill']), 'dml_resnet18-tiny_digits.py'))
    model = copy.deepcopy(cfg.model)
    model.student.data_preprocessor = dict(type='ClsDataPreprocessor', **cfg.data_preprocessor)
    torch.manual_seed(seed)
    d = build(model)

    def optimisers(m):
        groups = (m.module if isinstance(m, DistillerFSDP) else m).optim_groups()
        return OptimWrapperDict(**{name: sgd(part) for name, part in groups.items()})
    return d, optimisers


def test_trainable_teacher_and_two_optimisers(one_rank_group):
    """Mutual learning: the peer is sharded (a unit of its own), the two optimisers step it
    and the student as the unsharded distiller's do, and the full optimiser state of both
    parts round-trips through the save and load conversions."""
    from torch.distributed.fsdp import FSDPModule
    plain, optimisers = dml()
    plain.init_weights()
    d, _ = dml()
    wrapper = hook_bound(DistillerFSDP(d))
    assert isinstance(d.trainable_teachers['peer'], FSDPModule)
    ow_plain, ow = optimisers(plain), optimisers(wrapper)
    for step in range(2):
        plain.train_step(data(step), ow_plain)
        wrapper.train_step(data(step), ow)
    after = params(d)
    assert any(k.startswith('trainable_teachers.peer.') for k in after)
    for key, value in params(plain).items():
        torch.testing.assert_close(after[key], value, atol=ATOL, rtol=RTOL, msg=key)
    saved = ow.state_dict()
    for name, state in wrapper.full_optim_state(ow).items():
        plain_state = ow_plain.state_dict()[name]['state']
        assert state.keys() == plain_state.keys()
        for i, values in state.items():
            torch.testing.assert_close(values['momentum_buffer'],
                                       plain_state[i]['momentum_buffer'], atol=ATOL, rtol=RTOL)
        saved[name]['state'] = state
    fresh, _ = dml(seed=1)
    fresh_wrapper = DistillerFSDP(fresh)
    fresh_ow = optimisers(fresh_wrapper)
    fresh_ow.load_state_dict(fresh_wrapper.shard_optim_state(fresh_ow, saved))
    for name in ('student', 'peer'):
        a, b = fresh_ow[name].optimizer, ow[name].optimizer
        pa = [p for g in a.param_groups for p in g['params']]
        pb = [p for g in b.param_groups for p in g['params']]
        assert len(pa) == len(pb) and all(
            torch.equal(full(a.state[x]['momentum_buffer']), full(b.state[y]['momentum_buffer']))
            for x, y in zip(pa, pb))


class FakeRunner:
    """What DistillerFSDPHook uses of MMEngine's Runner, with the Runner's save and resume
    signatures; ``save_checkpoint`` builds the checkpoint as the Runner does (the model's and
    the optimiser's own state dicts) and calls the hook's ``before_save_checkpoint``."""

    def __init__(self, wrapper, optim_wrapper, hook):
        from mmengine.logging import MMLogger
        self.model, self.optim_wrapper, self.hook = wrapper, optim_wrapper, hook
        self.logger = MMLogger.get_current_instance()
        self.saved, self.resumed = None, None

    def _init_model_weights(self):
        raise AssertionError('the hook replaces it')

    def save_checkpoint(self, out_dir, filename, file_client_args=None, save_optimizer=True,
                        save_param_scheduler=True, meta=None, by_epoch=True,
                        backend_args=None):
        checkpoint = dict(state_dict=self.model.module.state_dict())
        if save_optimizer:
            checkpoint['optimizer'] = self.optim_wrapper.state_dict()
        self.hook.before_save_checkpoint(self, checkpoint)
        self.saved = checkpoint

    def resume(self, filename, resume_optimizer=True, resume_param_scheduler=True,
               map_location='default'):
        self.resumed = (filename, map_location)


def test_hook_saves_full_state_and_shards_it_on_load(one_rank_group):
    """The hook on a Runner-like object, with mutual learning's two optimisers: before_run
    replaces the weight init, the save (full tensors, gathered before the Runner's save; no
    optimiser state when the Runner saves none) and resume (onto the CPU); a saved checkpoint
    (keys with DDP's 'module.' prefix) loaded through after_load_checkpoint and MMEngine's
    loaders gives a fresh sharded distiller the same weights and momentum."""
    from mmengine.runner.checkpoint import _load_checkpoint_to_model
    d, optimisers = dml()
    wrapper = DistillerFSDP(d)
    ow = optimisers(wrapper)
    hook = DistillerFSDPHook()
    runner = FakeRunner(wrapper, ow, hook)
    hook.before_run(runner)
    assert wrapper.checkpoint_hook_bound
    runner._init_model_weights()  # replaced: no error
    wrapper.train_step(data(0), ow)
    runner.save_checkpoint('out', 'best.pth', save_optimizer=False)
    assert 'optimizer' not in runner.saved
    runner.save_checkpoint('out', 'epoch_1.pth')
    saved = runner.saved
    assert all(type(v) is torch.Tensor for v in saved['state_dict'].values())
    assert saved['optimizer'].keys() == {'student', 'peer'}
    for name, part in saved['optimizer'].items():
        assert part['state'] and all(type(v['momentum_buffer']) is torch.Tensor
                                     for v in part['state'].values())
    runner.resume('epoch_1.pth')
    assert runner.resumed == ('epoch_1.pth', 'cpu')

    fresh, _ = dml(seed=1)
    fresh_wrapper = DistillerFSDP(fresh)
    fresh_ow = optimisers(fresh_wrapper)
    fresh_hook = DistillerFSDPHook()
    fresh_runner = FakeRunner(fresh_wrapper, fresh_ow, fresh_hook)
    fresh_hook.before_run(fresh_runner)
    checkpoint = copy.deepcopy(saved)
    checkpoint['state_dict'] = {f'module.{k}': v for k, v in saved['state_dict'].items()}
    fresh_hook.after_load_checkpoint(fresh_runner, checkpoint)
    _load_checkpoint_to_model(fresh, checkpoint, strict=True)
    fresh_ow.load_state_dict(checkpoint['optimizer'])
    assert all(torch.equal(full(v), saved['state_dict'][k])
               for k, v in fresh.state_dict().items())
    for name in ('student', 'peer'):
        a, b = fresh_ow[name].optimizer, ow[name].optimizer
        pa = [p for g in a.param_groups for p in g['params']]
        pb = [p for g in b.param_groups for p in g['params']]
        assert all(torch.equal(full(a.state[x]['momentum_buffer']),
                               full(b.state[y]['momentum_buffer'])) for x, y in zip(pa, pb))


def test_hook_is_a_no_op_for_other_wrappers():
    class Runner:
        model = torch.nn.Linear(2, 2)
    hook = DistillerFSDPHook()
    checkpoint = dict(state_dict=dict(a=1), optimizer=dict(state={}))
    hook.before_run(Runner)
    hook.before_save_checkpoint(Runner, checkpoint)
    hook.after_load_checkpoint(Runner, checkpoint)
    assert checkpoint == dict(state_dict=dict(a=1), optimizer=dict(state={}))
    assert not hasattr(Runner, 'save_checkpoint')


# ---------------------------------------------------------------------- 2 processes, launched
def launch_config(folder, teacher: str, fsdp: bool) -> str:
    """The digits FitNet + logit-KD config (a connector: a sharded method) cut to 2 epochs of
    2 iterations (128 images, 32 per process, 2 processes), a checkpoint every epoch, one
    validation at the end; with the FSDP wrapper (its hook added by tools/train.py), or under
    DDP (tools/train.py's default for a distiller)."""
    name = 'fsdp' if fsdp else 'ddp'
    path = folder / f'kd_digits_{name}.py'
    lines = [
        f'_base_ = {osp.join(osp.dirname(DIGITS["distill"]), FITNET)!r}',
        f'model = dict(teacher=dict(checkpoint={teacher!r}))',
        'train_cfg = dict(max_epochs=2, val_interval=2)',
        'train_dataloader = dict(batch_size=32, dataset=dict(indices=128))',
        'val_dataloader = dict(batch_size=32, dataset=dict(indices=32))',
        'test_dataloader = val_dataloader',
        # Each rank draws other random numbers (its initial weights too): the runs start
        # alike only through the wrappers' broadcast from rank 0 (DDP's and DistillerFSDP's).
        'randomness = dict(seed=0, diff_rank_seed=True)',
        'default_hooks = dict(logger=dict(interval=1), '
        'checkpoint=dict(interval=1, max_keep_ckpts=3))']
    if fsdp:
        # No custom_hooks: tools/train.py adds mmkd.DistillerFSDPHook for this wrapper.
        lines += ["model_wrapper_cfg = dict(type='mmkd.DistillerFSDP', shard_units='children')"]
    path.write_text('\n'.join(lines) + '\n')
    return str(path)


FITNET = 'fitnet_resnet34-wide_resnet18-tiny_digits.py'  # its blocks are BLOCKS


def dist_train(name, config, work, *args):
    return (name, ['bash', 'tools/dist_train.sh', config, '2', '--work-dir', str(work), *args],
            dict(MASTER_ADDR='127.0.0.1', PORT=str(free_port())))


@pytest.fixture(scope='module')
def launched(tmp_path_factory, teacher_ckpts):
    """FSDP and DDP runs side by side, then the FSDP run resumed from its first epoch's
    checkpoint in another work dir: ``{name: (work dir, exit code, output)}``."""
    from test_distributed import launch
    folder = tmp_path_factory.mktemp('fsdp')
    configs = {fsdp: launch_config(folder, teacher_ckpts['digits'], fsdp)
               for fsdp in (True, False)}
    works = {name: folder / name for name in ('fsdp', 'ddp', 'resume')}
    runs = launch([dist_train('fsdp', configs[True], works['fsdp']),
                   dist_train('ddp', configs[False], works['ddp'])], folder, timeout=240)
    code, out = runs['fsdp']
    assert code == 0, out[-6000:]
    runs.update(launch([dist_train('resume', configs[True], works['resume'], '--resume',
                                   str(works['fsdp'] / 'epoch_1.pth'))], folder, timeout=240))
    return {name: (works[name], *runs[name]) for name in works}


def checkpoint(work, epoch):
    return torch.load(osp.join(work, f'epoch_{epoch}.pth'), map_location='cpu',
                      weights_only=False)


def test_launched_fsdp_trains_like_ddp_and_resumes(launched):
    """2 gloo processes (one test, so that pytest-xdist never launches the runs twice):

    - the FSDP run trains 2 x 2 iterations and validates; its checkpoints hold full plain
      tensors with the DDP run's keys and shapes, equal to the DDP run's weights, BN
      statistics and SGD momentum within ATOL/RTOL (measured: bit-identical);
    - the FSDP run resumed from its epoch-1 checkpoint (model and optimiser state sharded
      back) ends with the uninterrupted run's weights and momentum, bit for bit.
    """
    for name in ('fsdp', 'ddp'):
        work, code, out = launched[name]
        assert code == 0, out[-6000:]
        assert 'GPU number: 2' in out and 'Epoch(train) [2][2/2]' in out, out[-3000:]
        assert 'Epoch(val) [2][1/1]' in out, out[-3000:]
    out = launched['fsdp'][2]
    assert 'mmkd.DistillerFSDP: 5 FSDP units' in out and 'over 2 ranks' in out, out[-3000:]
    assert 'DistillerFSDPHook' in out
    for epoch in (1, 2):
        a, b = checkpoint(launched['fsdp'][0], epoch), checkpoint(launched['ddp'][0], epoch)
        assert list(a['state_dict']) == list(b['state_dict'])
        for key, value in b['state_dict'].items():
            assert type(a['state_dict'][key]) is torch.Tensor, key
            torch.testing.assert_close(a['state_dict'][key], value, atol=ATOL, rtol=RTOL,
                                       msg=key)
        sa, sb = a['optimizer']['state'], b['optimizer']['state']
        assert sa.keys() == sb.keys() and len(sa) == len(a['state_dict']) - sum(
            k.endswith(('running_mean', 'running_var', 'num_batches_tracked'))
            for k in a['state_dict'])  # one entry per parameter
        for index, values in sb.items():
            assert type(sa[index]['momentum_buffer']) is torch.Tensor
            torch.testing.assert_close(sa[index]['momentum_buffer'], values['momentum_buffer'],
                                       atol=ATOL, rtol=RTOL)
        assert a['optimizer']['param_groups'] == b['optimizer']['param_groups']

    work, code, out = launched['resume']
    assert code == 0, out[-6000:]
    assert 'resumed epoch: 1, iter: 2' in out and 'Epoch(train) [2][2/2]' in out, out[-3000:]
    assert 'Epoch(train) [1]' not in out
    a, b = checkpoint(work, 2), checkpoint(launched['fsdp'][0], 2)
    assert list(a['state_dict']) == list(b['state_dict'])
    for key, value in b['state_dict'].items():
        torch.testing.assert_close(a['state_dict'][key], value, atol=0, rtol=0, msg=key)
    for index, values in b['optimizer']['state'].items():
        torch.testing.assert_close(a['optimizer']['state'][index]['momentum_buffer'],
                                   values['momentum_buffer'], atol=0, rtol=0)
