"""The distiller in-process: building, freezing, recording, checkpoints and bad input."""
import copy
import math

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS as MMENGINE_MODELS

import mmkd  # noqa: F401
from mmkd.distillers import SingleTeacherDistiller
from mmkd.registry import MODELS

from conftest import DET, DIGITS, SEG, batch, build, digits_cfg, random_teacher_checkpoint


@pytest.fixture(scope='module')
def distiller(teacher_ckpts):
    return build(digits_cfg(teacher_ckpts['digits']))


def test_registry_scopes(teacher_ckpts):
    assert MODELS.scope == 'mmkd' and MODELS.parent is MMENGINE_MODELS
    assert MODELS.get('SingleTeacherDistiller') is SingleTeacherDistiller
    # 'mmkd.X' from a foreign default scope, and default_scope='mmkd' with an unscoped type.
    assert isinstance(build(digits_cfg(teacher_ckpts['digits']), 'mmdet'), SingleTeacherDistiller)
    cfg = digits_cfg(teacher_ckpts['digits'], type='SingleTeacherDistiller')
    model = build(cfg, 'mmkd')
    assert model.student_scope == 'mmpretrain' and model.teacher_scope == 'mmpretrain'
    # custom_imports in a config is how users load the plugin.
    assert Config.fromfile(DIGITS['distill']).custom_imports.imports == ['mmkd']


def test_teacher_frozen_eval_and_stopped_early(distiller):
    d = distiller
    assert all(not p.requires_grad for p in d.teacher.parameters())
    d.train()
    assert not d.teacher.training and all(not m.training for m in d.teacher.modules())
    assert d.student.training
    assert d.data_preprocessor is d.student.data_preprocessor

    inputs, samples = batch()
    losses = d(inputs, samples, mode='loss')
    assert set(losses) == {'student.loss', 'distill.logits.loss_kd', 'distill.logits.weight'}
    sum(losses.values()).backward()
    assert all(p.grad is None for p in d.teacher.parameters())
    assert d.student.backbone.conv1.weight.grad.abs().sum() > 0
    d.zero_grad()


def test_teacher_runs_only_as_deep_as_needed(teacher_ckpts):
    cfg = digits_cfg(teacher_ckpts['digits'], blocks=dict(
        feat=dict(student='backbone.layer3', teacher='backbone.layer3',
                  method=dict(type='FeatureMSE'))))
    d = build(cfg)
    calls = {'layer4': 0, 'head': 0}
    d.teacher.backbone.layer4.register_forward_hook(
        lambda *a: calls.__setitem__('layer4', calls['layer4'] + 1))
    d.teacher.head.register_forward_hook(lambda *a: calls.__setitem__('head', calls['head'] + 1))
    losses = d(*batch(), mode='loss')
    assert calls == {'layer4': 0, 'head': 0}
    assert 'distill.feat.loss_mse' in losses
    # The projector was sized by the dry run: layer3 is 16 channels (student) vs 64 (teacher).
    conv = d.methods['feat'].connectors[0]
    assert (conv.in_channels, conv.out_channels) == (16, 64)


def test_predict_and_tensor_modes_run_the_student(distiller):
    d = distiller.eval()
    inputs, samples = batch()
    with torch.no_grad():
        torch.testing.assert_close(d(inputs, mode='tensor'), d.student(inputs, mode='tensor'))
        preds = d(inputs, copy.deepcopy(samples), mode='predict')
    assert len(preds) == 4 and preds[0].pred_score.shape == (10,)
    d.train()


def test_checkpoint_excludes_teacher_and_reloads(distiller, teacher_ckpts, tmp_path):
    d = distiller
    state = d.state_dict()
    assert state and not any(k.startswith('teacher.') for k in state)
    assert any(k.startswith('student.') for k in state)
    other = build(digits_cfg(teacher_ckpts['digits']))
    teacher_before = {k: v.clone() for k, v in other.teacher.state_dict().items()}
    other.load_state_dict(state, strict=True)  # missing teacher keys are expected
    for k, v in other.student.state_dict().items():
        torch.testing.assert_close(v, d.student.state_dict()[k])
    for k, v in other.teacher.state_dict().items():
        torch.testing.assert_close(v, teacher_before[k])
    # Runner.init_weights() must not touch the loaded teacher.
    other.init_weights()
    for k, v in other.teacher.state_dict().items():
        torch.testing.assert_close(v, teacher_before[k])
    with pytest.raises(RuntimeError, match='student'):
        other.load_state_dict({k: v for k, v in state.items() if 'conv1' not in k}, strict=True)


def test_student_and_teacher_from_different_packages(tmp_path):
    """An mmdet RetinaNet student learns its backbone from an mmpretrain classifier teacher."""
    teacher = random_teacher_checkpoint(DIGITS['teacher'], str(tmp_path / 't.pth'))
    det = Config.fromfile(DET['student'])
    cfg = dict(type='mmkd.Distiller', student=det.model,
               teacher=dict(config=DIGITS['teacher'], checkpoint=teacher),
               blocks=dict(c5=dict(student='backbone.layer4', teacher='backbone.layer4',
                                   method=dict(type='FeatureMSE'))),
               dry_run_input_shape=(2, 3, 64, 64))
    d = build(cfg, 'mmdet')
    assert (d.student_scope, d.teacher_scope) == ('mmdet', 'mmpretrain')
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    samples = []
    for _ in range(2):
        s = DetDataSample(metainfo=dict(img_shape=(64, 64), pad_shape=(64, 64),
                                        batch_input_shape=(64, 64), scale_factor=(1., 1.)))
        s.gt_instances = InstanceData(bboxes=torch.tensor([[4., 4., 30., 30.]]),
                                      labels=torch.tensor([1]))
        samples.append(s)
    losses = d(torch.randn(2, 3, 64, 64), samples, mode='loss')
    assert {'student.loss_cls', 'student.loss_bbox', 'distill.c5.loss_mse'} <= set(losses)


def test_bad_input_errors(teacher_ckpts, tmp_path):
    ckpt = teacher_ckpts['digits']
    blocks = lambda s, t, m='LogitKD': dict(b=dict(student=s, teacher=t, method=dict(type=m)))
    with pytest.raises(KeyError, match=r"'head\.fcc' in the student \(block 'b'\).*Closest names: \['head\.fc'"):
        build(digits_cfg(ckpt, blocks=blocks('head.fcc', 'head.fc')))
    with pytest.raises(KeyError, match=r"'backbone\.layer9' in the teacher \(block 'b'\).*backbone\.layer4"):
        build(digits_cfg(ckpt, blocks=blocks('head.fc', 'backbone.layer9')))
    with pytest.raises(KeyError, match=r"unknown method type 'KDD'.*LogitKD"):
        build(digits_cfg(ckpt, blocks=blocks('head.fc', 'head.fc', 'KDD')))
    with pytest.raises(KeyError, match=r"unknown keys \['weight'\].*loss_weight"):
        build(digits_cfg(ckpt, blocks=dict(b=dict(student='head.fc', teacher='head.fc',
                                                  method=dict(type='LogitKD'), weight=1))))
    missing = str(tmp_path / 'nope.pth')
    cfg = digits_cfg(ckpt)
    cfg.teacher.checkpoint = missing
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        build(cfg)
    # A checkpoint of another architecture: the error names missing/unexpected keys.
    wrong = random_teacher_checkpoint(DIGITS['student'], str(tmp_path / 'student_arch.pth'))
    cfg.teacher.checkpoint = wrong
    with pytest.raises(RuntimeError, match=r'missing keys: \d+ .*backbone\.layer.*shape mismatch'):
        build(cfg)
    state = torch.load(ckpt, weights_only=True)
    state['state_dict']['extra.weight'] = torch.zeros(1)
    torch.save(state, tmp_path / 'extra.pth')
    cfg.teacher.checkpoint = str(tmp_path / 'extra.pth')
    with pytest.raises(RuntimeError, match=r"unexpected keys: 1 \['extra.weight'\]"):
        build(cfg)


def test_all_configs_build(teacher_ckpts, shapes_root):
    """Every distillation config of the demo builds with its teacher (random weights)."""
    for cfgs, name in ((DET, 'det'), (SEG, 'seg')):
        cfg = Config.fromfile(cfgs['distill'])
        cfg.model.teacher.checkpoint = teacher_ckpts[name]
        d = build(cfg.model, cfg.default_scope)
        assert isinstance(d, SingleTeacherDistiller)


def test_mixed_precision_autocast(teacher_ckpts):
    """Under autocast (bf16 on CPU, as AMP does on GPU) the blocks' losses stay float32 and
    gradients are finite: no dtype mismatch between a half-precision feature and a float
    projector (a common connector bug)."""
    cfg = digits_cfg(teacher_ckpts['digits'], blocks=dict(
        feat=dict(student='backbone.layer3', teacher='backbone.layer3',
                  method=dict(type='FeatureMSE')),
        logits=dict(student='head.fc', teacher='head.fc', method=dict(type='LogitKD', tau=4))))
    d = build(cfg).train()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        losses = d(*batch(), mode='loss')
    for key in ('distill.feat.loss_mse', 'distill.logits.loss_kd'):
        assert losses[key].dtype == torch.float32 and torch.isfinite(losses[key])
    sum(losses.values()).backward()
    grad = d.methods['feat'].connectors[0].weight.grad
    assert grad is not None and torch.isfinite(grad).all()


def test_wildcard_points_record_every_block(teacher_ckpts):
    """'backbone.layer*.*' expands to every residual block, in order; AFD gets them all."""
    cfg = digits_cfg(teacher_ckpts['digits'], blocks=dict(
        blocks=dict(student='backbone.layer*.*', teacher='backbone.layer3.*',
                    method=dict(type='AFD', qk_dim=8))))
    d = build(cfg)
    block = d.blocks['blocks']
    assert [p.module for p in block.student_points] == [
        f'backbone.layer{i}.{j}' for i in range(1, 5) for j in range(2)]  # ResNet-18: 4 x 2
    assert len(block.teacher_points) == 6  # ResNet-34 layer3 has 6 blocks
    assert len(d.methods['blocks'].key_layers) == 8 and len(d.methods['blocks'].query_layers) == 6
    inputs, samples = batch(size=16)
    losses = d(inputs, samples, mode='loss')
    assert losses['distill.blocks.loss_afd'] > 0
    bad = digits_cfg(teacher_ckpts['digits'], blocks=dict(
        b=dict(student='backbone.stage*.*', teacher='backbone.layer3',
               method=dict(type='FeatureMSE'))))
    with pytest.raises(KeyError, match=r"Pattern 'backbone.stage\*.\*' matches no module"):
        build(bad)


def test_teacher_is_outside_the_module_tree_but_follows_device_moves(distiller):
    """The teacher never reaches parameters(), state_dict(), init_weights() or the optimiser
    constructor (no "teacher.* is skipped" log lines with paramwise configs)."""
    from mmengine.optim import build_optim_wrapper
    d = distiller
    teacher_params = {id(p) for p in d.teacher.parameters()}
    assert teacher_params and not teacher_params & {id(p) for p in d.parameters()}
    assert not any(n.startswith('teacher') for n, _ in d.named_modules())
    wrapper = build_optim_wrapper(d, dict(
        optimizer=dict(type='SGD', lr=0.1, weight_decay=1e-4),
        paramwise_cfg=dict(norm_decay_mult=0.0)))
    optimised = {id(p) for g in wrapper.optimizer.param_groups for p in g['params']}
    assert optimised == {id(p) for p in d.parameters()}
    d.double()
    assert all(p.dtype == torch.float64 for p in d.teacher.parameters())
    d.float()
    assert all(p.dtype == torch.float32 for p in d.teacher.parameters())
    assert 'teacher' in repr(d) and 'not a submodule' in repr(d)


def test_skip_policy_leaves_weights_untouched_and_counts(teacher_ckpts):
    from mmengine.optim import build_optim_wrapper
    d = build(digits_cfg(teacher_ckpts['digits'], nonfinite_loss='skip')).train()
    wrapper = build_optim_wrapper(d, dict(optimizer=dict(type='SGD', lr=0.1, momentum=0.9)))
    inputs, samples = batch(size=16)
    data = dict(inputs=list((inputs * 50 + 100).clamp(0, 255)), data_samples=samples)
    before = {k: v.clone() for k, v in d.state_dict().items()}
    bad = dict(inputs=[x.clone() for x in data['inputs']], data_samples=samples)
    bad['inputs'][0][0, 0, 0] = math.nan
    log = d.train_step(bad, wrapper)
    assert log['nonfinite_skips'].item() == 1
    assert all(torch.isfinite(v).all() for v in log.values())  # NaN terms left out of the log
    for k, v in d.state_dict().items():
        assert torch.equal(v, before[k]), k  # weights and BN statistics: no trace of the batch
    log = d.train_step(data, wrapper)
    assert log['nonfinite_skips'].item() == 1 and torch.isfinite(log['loss'])
    assert not torch.equal(d.student.head.fc.weight, before['student.head.fc.weight'])


def test_teacher_normalisation_differing_from_the_students_is_applied_and_logged(
        teacher_ckpts, tmp_path, monkeypatch):
    """The teacher is fed the batch re-normalised to its own config's preprocessor (exactness:
    test_multi_teacher.py), and the log says so."""
    import mmkd.distillers.teachers as teachers_module
    messages = []
    monkeypatch.setattr(teachers_module, 'print_log', lambda msg, **kw: messages.append(msg))
    build(digits_cfg(teacher_ckpts['digits']))
    assert not messages  # the demo's teacher and student normalise alike
    teacher_cfg = tmp_path / 'teacher_rgb.py'
    teacher_cfg.write_text(f'_base_ = {DIGITS["teacher"]!r}\n'
                           'data_preprocessor = dict(mean=[10.0, 20.0, 30.0], to_rgb=True)\n')
    cfg = digits_cfg(teacher_ckpts['digits'])
    cfg.teacher.config = str(teacher_cfg)
    d = build(cfg)
    assert not d.teacher_info('teacher').view.identity
    assert len(messages) == 1
    for words in ('re-normalised', "'mean': [10.0, 20.0, 30.0]", "'mean': [78.0, 78.0",
                  "'flip_channels': True", 'teacher_rgb.py'):
        assert words in messages[0], (words, messages[0])


def test_test_checkpoint_loading_pairs_any_checkpoint_with_any_config(distiller, teacher_ckpts,
                                                                      tmp_path):
    """tools/test.py's loader: a plain student checkpoint into a distiller loads its student;
    a distillation checkpoint into the plain model loads the student part; a checkpoint that
    would leave weights random is an error (tools/test.py end to end: test_train_e2e.py)."""
    from types import SimpleNamespace
    from mmkd.utils import load_test_checkpoint
    d = distiller
    plain_path, distill_path = str(tmp_path / 'plain.pth'), str(tmp_path / 'distill.pth')
    torch.save(dict(state_dict=d.student.state_dict()), plain_path)
    torch.save(dict(state_dict=d.state_dict()), distill_path)

    def runner(model):
        return SimpleNamespace(model=model, call_hook=lambda *a, **k: None)
    other = build(digits_cfg(teacher_ckpts['digits']))
    load_test_checkpoint(runner(other), plain_path)
    for k, v in d.student.state_dict().items():
        assert torch.equal(other.student.state_dict()[k], v), k
    plain = build(Config.fromfile(DIGITS['student']).model)
    load_test_checkpoint(runner(plain), distill_path)
    for k, v in d.student.state_dict().items():
        assert torch.equal(plain.state_dict()[k], v), k
    with pytest.raises(RuntimeError, match=r'shape mismatch \d+ .*randomly initialised'):
        load_test_checkpoint(runner(plain), teacher_ckpts['digits'])  # another architecture
    torch.save(dict(state_dict={k: v for k, v in d.student.state_dict().items()
                                if 'head' not in k}), plain_path)
    with pytest.raises(RuntimeError, match=r"missing 2 \['head.fc.bias', 'head.fc.weight'\]"):
        load_test_checkpoint(runner(other), plain_path)


def test_student_starts_from_the_baseline_runs_weights(teacher_ckpts):
    """The same seed gives the distilled student exactly the initial weights of a plain student
    run: building the teacher and the methods and the dry run do not shift the random stream
    that the Runner's init_weights() then draws from."""
    from mmkd.distillers import build_model_in_scope
    cfg = digits_cfg(teacher_ckpts['digits'], blocks=dict(
        feat=dict(student='backbone.layer3', teacher='backbone.layer3',
                  method=dict(type='FeatureMSE'))))
    torch.manual_seed(0)
    d = build(cfg)
    d.init_weights()
    plain_cfg = Config.fromfile(DIGITS['student']).model
    torch.manual_seed(0)
    plain = build_model_in_scope(plain_cfg, 'mmpretrain')
    plain.init_weights()
    distilled = dict(d.student.named_parameters())
    assert set(distilled) == set(dict(plain.named_parameters()))
    for key, value in plain.named_parameters():
        assert torch.equal(distilled[key], value), key


def test_methods_are_bound_to_their_blocks_teachers_before_the_dry_run(teacher_ckpts):
    """``bind_teachers`` gets ``{name: model}`` of the teachers the block reads, before the dry
    run builds the method (OFD reads the teacher's BatchNorm statistics this way)."""
    from mmkd.methods import FeatureMSE

    seen = {}

    @MODELS.register_module(force=True)
    class _BindProbe(FeatureMSE):
        def bind_teachers(self, teachers):
            seen['teachers'], seen['built'] = dict(teachers), self.built

    cfg = digits_cfg(teacher_ckpts['digits'], blocks=dict(
        feat=dict(student='backbone.layer3', teacher='backbone.layer3',
                  method=dict(type='_BindProbe'))))
    try:
        d = build(cfg)
    finally:  # registered methods must each have a parity-table row (tests/test_docs.py)
        MODELS._module_dict.pop('_BindProbe')
    assert seen['built'] is False and list(seen['teachers']) == ['teacher']
    assert seen['teachers']['teacher'] is d.teacher
    assert not any(m is d.teacher for m in d.methods.modules())  # not registered twice
