"""Training-only branch inserts (issue 32, self-distillation): a branch sees the output of its
module and leaves it unchanged, runs in the loss and tensor modes and not in predict, is
trained and recorded as the student's own, and is dropped at export (weights and entry), so
the exported student is the plain one; and the AuxExit module (BYOT's shallow classifier)
against the reimplementation's branch written out, with its shapes inferred in the dry run."""
import copy
import os.path as osp
import pickle

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config

import mmkd  # noqa: F401
import mmkd.models.aux_exit  # noqa: F401  (registers mmkd.AuxExit until mmkd.models imports it)
from mmkd.distillers.inserts import (attach_inserts, branch_names, build_student_with_inserts,
                                     infer_insert_channels, without_branches)
from mmkd.models.aux_exit import AuxExit

from conftest import DIGITS, REPO, batch, build, digits_cfg, random_teacher_checkpoint

EXPORT = osp.join(REPO, 'tools', 'model_converters', 'extract_student.py')


def exits(**module):
    return {f'exit{i}': dict(after=f'backbone.layer{i}', mode='branch', module=dict(
        type='mmkd.AuxExit', num_classes=10, match='backbone.layer4', **module))
        for i in (1, 2, 3)}


def student_cfg():
    cfg = Config.fromfile(DIGITS['student'])
    cfg.model.data_preprocessor = dict(type='ClsDataPreprocessor', **cfg.data_preprocessor)
    return cfg.model


def authors_branch(channel_in, channel_out, kernel_size):
    """luanyunteng/pytorch-be-your-own-teacher (commit 8045079), models/resnet.py,
    branchBottleNeck, written out; then the network's avgpool, flatten and middle_fc."""
    middle = channel_out // 4
    return nn.Sequential(
        nn.Conv2d(channel_in, middle, kernel_size=1, stride=1), nn.BatchNorm2d(middle),
        nn.ReLU(),
        nn.Conv2d(middle, middle, kernel_size=kernel_size, stride=kernel_size),
        nn.BatchNorm2d(middle), nn.ReLU(),
        nn.Conv2d(middle, channel_out, kernel_size=1, stride=1), nn.BatchNorm2d(channel_out),
        nn.ReLU())


def test_aux_exit_is_the_reimplementations_branch_with_pool_and_fc():
    torch.manual_seed(0)
    exit_ = AuxExit(num_classes=7, in_channels=8, out_channels=32, stride=4).double()
    branch, fc = authors_branch(8, 32, 4).double(), nn.Linear(32, 7).double()
    branch.load_state_dict(exit_.features.state_dict())  # same layers, same keys
    fc.load_state_dict(exit_.fc.state_dict())
    x = torch.randn(3, 8, 16, 16, dtype=torch.float64)
    for mode in (True, False):
        exit_.train(mode), branch.train(mode)
        feats = nn.AdaptiveAvgPool2d((1, 1))(branch(x))
        expected = fc(torch.flatten(feats, 1))
        assert torch.allclose(exit_(x), expected, atol=1e-12)
    assert exit_.features(x).shape == (3, 32, 4, 4)
    # Kaiming fan-out on the convolutions, BN at 1 / 0 (the reimplementation's init)
    convs = [m for m in exit_.features if isinstance(m, nn.Conv2d)]
    assert all(m.bias is not None for m in convs)
    std = convs[-1].weight.std().item()
    assert abs(std - (2 / 32) ** 0.5) < 0.05  # fan_out = 32 x 1 x 1
    with pytest.raises(ValueError, match=r'in_channels must be an int >= 1, got None.*'
                       r"match='<the deepest stage>'"):
        AuxExit(num_classes=10)
    with pytest.raises(ValueError, match='has in_channels=8 but the module it follows gives 4'):
        exit_(torch.randn(1, 4, 16, 16, dtype=torch.float64))
    with pytest.raises(TypeError, match=r'one \(N, C, H, W\) map'):
        exit_((x, ))


def test_branches_leave_the_output_run_in_loss_and_tensor_modes_and_not_in_predict():
    torch.manual_seed(0)
    plain = build(student_cfg())
    model = copy.deepcopy(plain)
    inserts = infer_insert_channels(model, exits(), (2, 3, 16, 16))
    assert [inserts[f'exit{i}']['module']['stride'] for i in (1, 2, 3)] == [8, 4, 2]
    assert [inserts[f'exit{i}']['module']['in_channels'] for i in (1, 2, 3)] == [4, 8, 16]
    assert {inserts[n]['module']['out_channels'] for n in inserts} == {32}
    attach_inserts(model, inserts)
    # keys: the plain model's, unchanged, and the exits' beside them
    keys = set(model.state_dict())
    assert set(plain.state_dict()) <= keys
    assert all(k.startswith('kd_inserts.exit') for k in keys - set(plain.state_dict()))
    calls = []
    handle = model.kd_inserts.exit2.register_forward_hook(
        lambda m, a, out: calls.append(out.shape))
    x = torch.randn(2, 3, 16, 16)
    model.eval(), plain.eval()
    assert torch.equal(model(x, mode='tensor'), plain(x, mode='tensor'))
    assert calls == [(2, 10)]
    for args, kwargs in (((x, None, 'predict'), {}), ((x, ), dict(mode='predict')),
                         ((x, ), dict(data_samples=None, mode='predict'))):
        calls.clear()
        out = model(*args, **kwargs)
        assert calls == [] and len(out) == 2
        ref = plain(*args, **kwargs)
        assert all(torch.equal(a.pred_score, b.pred_score) for a, b in zip(out, ref))
    calls.clear()
    model(x)  # mode left out: mmengine's default, 'tensor'
    assert calls == [(2, 10)]
    # loss mode (training): the branch runs and the student's own losses are unchanged
    model.train(), plain.train()
    inputs, samples = batch(2, 16)
    calls.clear()
    torch.manual_seed(1)
    loss = model(inputs, samples, mode='loss')
    torch.manual_seed(1)
    assert torch.equal(loss['loss'], plain(inputs, samples, mode='loss')['loss'])
    assert calls == [(2, 10)]
    handle.remove()
    # deep copies and pickles keep the hooks (plain objects), and predict still skips them
    for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        clone.eval()
        seen = []
        clone.kd_inserts.exit1.register_forward_hook(lambda m, a, out: seen.append(1))
        clone(x, mode='predict')
        assert seen == []
        clone(x, mode='tensor')
        assert seen == [1]


def test_branch_settings_and_the_export_helpers():
    inserts = dict(exits(), keep=dict(after='backbone.layer4',
                                      module=dict(type='KDLayer', num_templates=4)))
    assert branch_names(inserts) == ['exit1', 'exit2', 'exit3']
    assert list(without_branches(inserts)) == ['keep']
    assert without_branches(exits()) is None and branch_names(None) == []
    with pytest.raises(ValueError, match=r"exit1: mode='side': valid values are "
                       r"\['replace', 'branch'\]"):
        attach_inserts(build(student_cfg()), dict(exit1=dict(exits()['exit1'], mode='side')))
    with pytest.raises(KeyError, match="optionally mode"):
        attach_inserts(build(student_cfg()), dict(exit1=dict(exits()['exit1'], extra=1)))
    # a branch and a replacing insert may follow the same module: the branch sees the
    # module's own output, the network the replaced one
    torch.manual_seed(0)
    cfg = student_cfg()
    both = dict(exit4=dict(after='backbone.layer4', mode='branch',
                           module=dict(type='mmkd.AuxExit', num_classes=10, in_channels=32,
                                       out_channels=32, stride=1)),
                keep=dict(after='backbone.layer4',
                          module=dict(type='KDLayer', in_channels=32, num_templates=4)))
    model = build_student_with_inserts(cfg, both).eval()
    seen = []
    model.kd_inserts.exit4.register_forward_pre_hook(lambda m, a: seen.append(a[0]))
    raw = []  # the KD layer's input: the stage's own output
    model.kd_inserts.keep.register_forward_pre_hook(lambda m, a: raw.append(a[0]))
    model(torch.randn(2, 3, 16, 16), mode='tensor')
    assert len(seen) == len(raw) == 1 and torch.equal(seen[0], raw[0])
    # without a distiller (StudentWithInserts), nothing infers the exit's shapes
    with pytest.raises(ValueError, match='in_channels must be an int >= 1'):
        build_student_with_inserts(cfg, exits())
    # a stage whose map is not a multiple of the matched one is refused, naming both
    with pytest.raises(ValueError, match=r"Insert 'x' \(AuxExit after 'backbone.layer4'\).*"
                       r'\(2x2\) is not an integer multiple.*\(4x4\)'):
        infer_insert_channels(build(cfg), dict(x=dict(
            after='backbone.layer4', mode='branch',
            module=dict(type='mmkd.AuxExit', num_classes=10, match='backbone.layer3'))),
            (2, 3, 16, 16))


@pytest.fixture(scope='module')
def digits_teacher(tmp_path_factory):
    return random_teacher_checkpoint(
        DIGITS['teacher'], str(tmp_path_factory.mktemp('byot') / 'teacher.pth'))


def extract_student(*args, capsys):
    """tools/model_converters/extract_student.py, run in this process (as its __main__)."""
    import runpy
    import sys
    argv = sys.argv
    sys.argv = [EXPORT, *args]
    try:
        runpy.run_path(EXPORT, run_name='__main__')
    finally:
        sys.argv = argv
    return capsys.readouterr().out


def test_distilled_branches_train_and_export_as_the_plain_student(digits_teacher, tmp_path,
                                                                  capsys):
    """In a distiller: the exits are the student's (student.kd_inserts.*), recorded by a block,
    get gradients, and are left out by extract_student.py: the plain base config loads the
    export strictly and predicts exactly as the distiller's predict mode."""
    from mmkd.hooks.run_record import to_data
    torch.manual_seed(0)
    distiller = build(digits_cfg(
        digits_teacher, student_inserts=exits(), dry_run_input_shape=(2, 3, 16, 16),
        blocks=dict(exit1=dict(student='kd_inserts.exit1', teacher='head.fc',
                               method='LogitKD'))))
    assert distiller.student_inserts['exit1']['module']['stride'] == 8
    assert any(n.startswith('student.kd_inserts.exit1.') for n, _ in
               distiller.named_parameters())
    inputs, samples = batch(4, 16)
    losses = distiller(inputs, samples, mode='loss')
    total = sum(v for k, v in losses.items() if 'loss' in k)
    total.backward()
    assert distiller.student.kd_inserts.exit1.fc.weight.grad.abs().sum() > 0
    stem_grad = distiller.student.backbone.conv1.weight.grad.clone()
    assert stem_grad.abs().sum() > 0
    # an export with a run record as tools/train.py writes it
    distiller.eval()
    record = dict(format=1, config=to_data(Config.fromfile(DIGITS['distill']).to_dict()),
                  student=dict(model=to_data(distiller.student_config),
                               scope=distiller.student_scope,
                               inserts=to_data(distiller.student_inserts)))
    src, dst = str(tmp_path / 'epoch_1.pth'), str(tmp_path / 'student.pth')
    torch.save(dict(state_dict=distiller.state_dict(), meta=dict(mmkd=record)), src)
    out = extract_student(src, dst, capsys=capsys)
    assert "left out the training-only branches ['exit1', 'exit2', 'exit3']" in out, out
    assert not osp.exists(tmp_path / 'student.py')  # the plain student needs no config
    state = torch.load(dst, weights_only=True)['state_dict']
    plain = build(student_cfg())
    plain.load_state_dict(state, strict=True)
    plain.eval()
    x = torch.randn(3, 3, 16, 16)
    got = plain(x, mode='predict')
    ref = distiller(x, mode='predict')
    assert all(torch.equal(a.pred_score, b.pred_score) for a, b in zip(got, ref))
    # --config-out writes the plain student's config: no inserts left
    extract_student(src, dst, '--config-out', str(tmp_path / 'plain.py'), capsys=capsys)
    written = Config.fromfile(str(tmp_path / 'plain.py'))
    assert written.model.type == 'ImageClassifier' and 'inserts' not in str(written.model)
