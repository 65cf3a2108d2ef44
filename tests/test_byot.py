"""BYOT (issue 32, self-distillation) against the train loop of the reimplementation that
MMRazor's BYOT README links (the paper's code was never released):
luanyunteng/pytorch-be-your-own-teacher, commit 8045079, ``train.py`` (``kd_loss_function``,
``feature_loss_function`` and the total loss of ``run_training``) and ``models/resnet.py``
(``branchBottleNeck``), written out below. Loss and gradient, in float64, to 1e-10; the one
intended difference is stated and tested: the code's soft cross-entropy is the paper's KL plus
the entropy of the (detached) deepest softmax, a constant for the exit."""
import os.path as osp
import pickle

import pytest
import torch
import torch.nn.functional as F
from mmpretrain.structures import DataSample

import mmkd  # noqa: F401
import mmkd.methods.byot  # noqa: F401  (registers BYOT until mmkd.methods imports it)
import mmkd.models.aux_exit  # noqa: F401
from mmkd.methods.byot import BYOT, masked_feature_l2

from conftest import DIGITS, REPO, build, run_tool

TOL = 1e-10  # float64 throughout


def samples(labels):
    return [DataSample().set_gt_label(int(y)) for y in labels]


# ---------------------------------------------------------------- the authors' loop, written out
def kd_loss_function(output, target_output, temperature):
    """train.py: soft cross-entropy of the middle logits against the deepest softmax(z / T)."""
    output = output / temperature
    output_log_softmax = torch.log_softmax(output, dim=1)
    return -torch.mean(torch.sum(output_log_softmax * target_output, dim=1))


def feature_loss_function(fea, target_fea):
    """train.py: squared difference where either is positive, summed over everything."""
    loss = (fea - target_fea) ** 2 * ((fea > 0) | (target_fea > 0)).float()
    return torch.abs(loss).sum()


def authors_total(output, middles, final_fea, middle_feas, target, alpha, temperature, beta):
    """run_training's total_loss for any number of exits (the code has three)."""
    criterion = torch.nn.CrossEntropyLoss()
    temp4 = torch.softmax(output / temperature, dim=1)
    loss = criterion(output, target)
    ce = sum(criterion(m, target) for m in middles)
    kd = sum(kd_loss_function(m, temp4.detach(), temperature) * temperature ** 2
             for m in middles)
    feat = sum(feature_loss_function(f, final_fea.detach()) for f in middle_feas)
    return (1 - alpha) * (loss + ce) + alpha * kd + beta * feat


def entropy(logits, temperature):
    p = torch.softmax(logits / temperature, dim=1)
    return -(p * torch.log_softmax(logits / temperature, dim=1)).sum(1).mean()


def ours_total(output, middles, final_fea, middle_feas, target, alpha, temperature, beta):
    """The student's own CE at weight 1 - alpha (the configs' head loss_weight) plus one BYOT
    block per exit, student [logits, pooled features], teacher [deepest logits, features]."""
    method = BYOT(alpha=alpha, tau=temperature, feature_weight=beta)
    total = (1 - alpha) * F.cross_entropy(output, target)
    parts = []
    for m, f in zip(middles, middle_feas):
        out = method([m, f.flatten(1)], [output, final_fea.flatten(1)], samples(target))
        assert set(out) == {'loss_ce', 'loss_kd', 'loss_feature'}
        parts.append(out)
        total = total + sum(out.values())
    return total, parts


def make(n=6, k=10, c=8, exits=3, seed=0):
    g = torch.Generator().manual_seed(seed)

    def leaf(*shape, relu=False):
        x = torch.randn(*shape, generator=g, dtype=torch.float64) * 2
        return (x.relu() if relu else x).requires_grad_()
    output = leaf(n, k)
    middles = [leaf(n, k) for _ in range(exits)]
    final_fea = leaf(n, c, 1, 1, relu=True)
    middle_feas = [leaf(n, c, 1, 1) for _ in range(exits)]  # signed: the mask matters
    target = torch.randint(0, k, (n, ), generator=g)
    return output, middles, final_fea, middle_feas, target


@pytest.mark.parametrize('alpha,temperature,beta', [(0.1, 3.0, 1e-6), (0.3, 3.0, 0.03),
                                                    (0.5, 1.0, 0.5)])
def test_loss_and_gradient_equal_the_authors_loop(alpha, temperature, beta):
    tensors = make()
    output, middles, final_fea, middle_feas, target = tensors
    theirs = authors_total(*tensors, alpha, temperature, beta)
    their_grads = torch.autograd.grad(theirs, [output, *middles, *middle_feas])
    ours, parts = ours_total(*tensors, alpha, temperature, beta)
    our_grads = torch.autograd.grad(ours, [output, *middles, *middle_feas])
    # the code's soft CE = our KL + the deepest softmax's entropy (per exit, times alpha T^2)
    constant = len(middles) * alpha * temperature ** 2 * entropy(output, temperature)
    assert abs((ours + constant - theirs).item()) < TOL
    for a, b in zip(our_grads, their_grads):
        assert torch.allclose(a, b, atol=TOL, rtol=0)
    # each part as the code's terms
    for m, f, part in zip(middles, middle_feas, parts):
        assert abs(part['loss_ce'] - (1 - alpha) * F.cross_entropy(m, target)) < TOL
        assert abs(part['loss_feature'] - beta * feature_loss_function(
            f, final_fea.detach())) < TOL
        code_kd = alpha * temperature ** 2 * kd_loss_function(
            m, torch.softmax(output / temperature, 1), temperature)
        kd_constant = alpha * temperature ** 2 * entropy(output, temperature)
        assert abs(part['loss_kd'] + kd_constant - code_kd) < TOL
    # the deepest values are not pulled toward the exits: no gradient reaches the deepest
    # features, and the deepest logits get only their own CE's
    blocks = sum(sum(p.values()) for p in ours_total(*tensors, alpha, temperature, beta)[1])
    assert all(g is None for g in torch.autograd.grad(
        blocks, [output, final_fea], allow_unused=True))


def test_hand_cases_and_options():
    # an exit equal to the deepest classifier: KL 0, features 0; only its CE is left
    z = torch.tensor([[2.0, 0.0, -1.0]])
    f = torch.tensor([[0.5, 0.0, 1.0]])
    out = BYOT(alpha=0.25)([z, f], [z, f], samples([0]))
    assert out['loss_kd'].item() == pytest.approx(0.0, abs=1e-7)
    assert out['loss_feature'].item() == 0.0
    assert out['loss_ce'].item() == pytest.approx(0.75 * -F.log_softmax(z, 1)[0, 0].item())
    # the mask drops positions where neither is positive; 'batchmean' divides by N
    s = torch.tensor([[-1.0, 2.0], [-3.0, 0.0]])
    t = torch.tensor([[-2.0, 1.0], [1.0, -1.0]])
    assert masked_feature_l2(s, t).item() == pytest.approx(1.0 + 16.0)  # (2-1)^2 + (-3-1)^2
    assert masked_feature_l2(s, t, mask=False).item() == pytest.approx(1 + 1 + 16 + 1)
    zs = torch.zeros(2, 3)
    y = samples([0, 1])
    summed = BYOT(feature_weight=1.0)([zs, s], [zs, t], y)['loss_feature']
    mean = BYOT(feature_weight=1.0, feature_reduction='batchmean')([zs, s], [zs, t], y)
    assert mean['loss_feature'].item() == pytest.approx(summed.item() / 2)
    # logits alone: no hint
    assert set(BYOT()(zs, zs, y)) == {'loss_ce', 'loss_kd'}


def test_build_checks_and_argument_schema():
    m = BYOT()
    m.build([torch.zeros(2, 10), torch.zeros(2, 32)], [torch.zeros(2, 10), torch.zeros(2, 32)])
    with pytest.raises(ValueError, match='exit gives 5 classes.*num_classes=10'):
        BYOT().build(torch.zeros(2, 5), torch.zeros(2, 10))
    with pytest.raises(ValueError, match='features on both sides or on neither'):
        BYOT().build([torch.zeros(2, 10), torch.zeros(2, 4)], torch.zeros(2, 10))
    with pytest.raises(ValueError, match=r'logits must be \(N, K\)'):
        BYOT().build(torch.zeros(2, 10, 3, 3), torch.zeros(2, 10))
    with pytest.raises(ValueError, match='differ in size'):
        BYOT().build([torch.zeros(2, 10), torch.zeros(2, 4)],
                     [torch.zeros(2, 10), torch.zeros(2, 8)])
    with pytest.raises(ValueError, match=r'alpha must be a finite number in \[0, 1\]'):
        BYOT(alpha=1.5)
    with pytest.raises(ValueError, match='tau must be positive'):
        BYOT(tau=0)
    with pytest.raises(ValueError, match='needs the ground-truth labels'):
        BYOT()(torch.zeros(2, 3), torch.zeros(2, 3))


# ---------------------------------------------------------------- through the distiller
DEMO_BYOT = osp.join(REPO, 'configs', 'demo', 'digits', 'byot_resnet18-tiny_digits.py')


def byot_distiller(**method):
    from mmengine.config import Config
    cfg = Config.fromfile(DEMO_BYOT)
    cfg.model.student.data_preprocessor = dict(type='ClsDataPreprocessor',
                                               **cfg.data_preprocessor)
    for block in cfg.model.blocks.values():
        block.method.update(method)
    torch.manual_seed(0)
    return build(cfg.model)


def test_the_demo_distiller_step_equals_the_authors_loop_on_the_same_network():
    """One training step of the demo config (no teacher; blocks read 'self:' points) against
    run_training's total loss on the same network, its exits and its forward written out as
    Multi_ResNet.forward does (stage, then the stage's branch, pool, fc), float64."""
    alpha, temperature, beta = 0.1, 3.0, 0.01  # beta raised so that the hint counts
    distiller = byot_distiller(feature_weight=beta).double().train()
    assert not distiller.teachers  # no teacher model at all
    torch.manual_seed(1)
    inputs = torch.randn(8, 3, 16, 16, dtype=torch.float64)
    target = torch.arange(8) % 10
    params = [p for p in distiller.student.parameters()]
    losses = distiller(inputs, samples(target), mode='loss')
    assert {k for k in losses if 'loss' in k} == {'student.loss'} | {
        f'distill.exit{i}.{t}' for i in (1, 2, 3) for t in ('loss_ce', 'loss_kd', 'loss_feature')}
    ours = sum(v for k, v in losses.items() if 'loss' in k)
    our_grads = torch.autograd.grad(ours, params, allow_unused=True)

    s = distiller.student
    b, exits = s.backbone, s.kd_inserts
    x = b.relu(b.norm1(b.conv1(inputs)))
    middles, middle_feas = [], []
    for i in (1, 2, 3):
        x = getattr(b, f'layer{i}')(x)
        exit_ = exits[f'exit{i}']
        fea = exit_.pool(exit_.features(x))
        middle_feas.append(fea)
        middles.append(exit_.fc(torch.flatten(fea, 1)))
    x = b.layer4(x)
    final_fea = torch.nn.AdaptiveAvgPool2d((1, 1))(x)
    output = s.head.fc(torch.flatten(final_fea, 1))
    theirs = authors_total(output, middles, final_fea, middle_feas, target, alpha,
                           temperature, beta)
    their_grads = torch.autograd.grad(theirs, params, allow_unused=True)
    constant = 3 * alpha * temperature ** 2 * entropy(output.detach(), temperature)
    assert abs((ours + constant - theirs).item()) < TOL
    named = [n for n, _ in distiller.student.named_parameters()]
    for name, a, b_ in zip(named, our_grads, their_grads):
        assert (a is None) == (b_ is None), name
        if a is not None:
            assert torch.allclose(a, b_, atol=TOL, rtol=0), name
    assert all(g is not None for g in our_grads)  # every exit and stage is trained


CIFAR_NETS = [('resnet18', (64, 128, 256), 512), ('resnet50', (256, 512, 1024), 2048)]


@pytest.mark.parametrize('net,channels,width', CIFAR_NETS)
def test_cifar_configs_build_with_inferred_exits_and_export_to_their_baseline(
        net, channels, width):
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'byot', f'byot_{net}_cifar100.py'))
    base = Config.fromfile(osp.join(REPO, 'configs', 'byot', f'{net}_cifar100.py'))
    for c in (cfg.model.student, base.model):
        c.data_preprocessor = dict(type='ClsDataPreprocessor', **cfg.data_preprocessor)
    distiller = build(cfg.model)
    assert not distiller.teachers
    assert distiller.student.head.loss_module.loss_weight == pytest.approx(0.9)
    exits = {k: v['module'] for k, v in distiller.student_inserts.items()}
    assert [exits[f'exit{i}']['in_channels'] for i in (1, 2, 3)] == list(channels)
    assert [exits[f'exit{i}']['stride'] for i in (1, 2, 3)] == [8, 4, 2]
    assert {e['out_channels'] for e in exits.values()} == {width}
    state = {k: v for k, v in distiller.student.state_dict().items()
             if not k.startswith('kd_inserts.')}
    build(base.model).load_state_dict(state, strict=True)  # the export loads into the baseline
    assert (cfg.train_cfg.max_epochs, cfg.train_dataloader.batch_size,
            cfg.param_scheduler.milestones) == (200, 128, [75, 130, 180])


@pytest.fixture
def byot_config(tmp_path):
    """The demo config, importing the new modules until mmkd's __init__ files do."""
    path = tmp_path / 'byot.py'
    path.write_text(f'_base_ = {DEMO_BYOT!r}\ncustom_imports = dict(imports=[\'mmkd\', '
                    "'mmkd.methods.byot', 'mmkd.models.aux_exit'], "
                    'allow_failed_imports=False)\n')
    return str(path)


@pytest.mark.slow  # ~80 s on 2 shared cores; the two tests above cover the step and export
def test_demo_trains_exports_the_plain_student_and_tests_identically(byot_config, tmp_path):
    """tools/train.py on the demo (1 epoch), extract_student.py writes only the plain student
    (no config: the exits are dropped), the plain digits config loads it strictly, and
    tools/test.py on it dumps exactly the predictions of the distillation checkpoint."""
    work = tmp_path / 'work'
    out = run_tool(['tools/train.py', byot_config, '--work-dir', str(work), '--cfg-options',
                    'train_cfg.max_epochs=1']).stdout
    for i in (1, 2, 3):
        for term in ('loss_ce', 'loss_kd', 'loss_feature'):
            assert f'distill.exit{i}.{term}' in out, out[-3000:]
    assert 'accuracy/top1' in out
    src, dst = str(work / 'epoch_1.pth'), str(tmp_path / 'student.pth')
    out = run_tool(['tools/model_converters/extract_student.py', src, dst]).stdout
    assert "left out the training-only branches ['exit1', 'exit2', 'exit3']" in out, out
    assert not osp.exists(tmp_path / 'student.py')
    from mmengine.config import Config
    plain_cfg = Config.fromfile(DIGITS['student'])
    plain_cfg.model.data_preprocessor = dict(type='ClsDataPreprocessor',
                                             **plain_cfg.data_preprocessor)
    plain = build(plain_cfg.model)
    plain.load_state_dict(torch.load(dst, weights_only=True)['state_dict'], strict=True)
    preds = {}
    for name, args in dict(distiller=[byot_config, src],
                           exported=[DIGITS['student'], dst]).items():
        pkl = str(tmp_path / f'{name}.pkl')
        run_tool(['tools/test.py', *args, '--work-dir', str(tmp_path / name), '--out', pkl])
        with open(pkl, 'rb') as f:
            preds[name] = pickle.load(f)
    assert len(preds['exported']) == len(preds['distiller']) == 450
    for a, b in zip(preds['distiller'], preds['exported']):
        assert torch.equal(a['pred_score'], b['pred_score'])


@pytest.mark.slow  # three short runs; test_branch_inserts covers the exits' keys in-process
def test_demo_resumes_bit_exactly(byot_config, tmp_path):
    """Interrupted after epoch 1 of 2 and resumed: the student and its exits (saved as
    student.kd_inserts.*) end bit-identical to the uninterrupted run."""
    from mmkd.utils.checkpoint import safe_torch_load
    lines = ['train_cfg = dict(max_epochs=2, val_interval=1)',
             'train_dataloader = dict(batch_size=32, dataset=dict(indices=96))',
             'val_dataloader = dict(dataset=dict(indices=32))',
             'default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=3))']
    full = tmp_path / 'full.py'
    full.write_text('\n'.join([f'_base_ = {byot_config!r}', *lines]) + '\n')
    cut = tmp_path / 'cut.py'
    cut.write_text('\n'.join([
        f'_base_ = {byot_config!r}', *lines,
        "custom_imports = dict(imports=['mmkd', 'mmkd.methods.byot', 'mmkd.models.aux_exit', "
        "'interrupt_hook'])", 'custom_hooks = [dict(type="InterruptTrainingAt", epoch=1)]']) +
        '\n')
    run_tool(['tools/train.py', str(full), '--work-dir', str(tmp_path / 'a')])
    first = run_tool(['tools/train.py', str(cut), '--work-dir', str(tmp_path / 'b')],
                     check=False, env=dict(PYTHONPATH=osp.join(REPO, 'tests')))
    assert first.returncode != 0 and 'simulated interruption' in first.stdout
    run_tool(['tools/train.py', str(full), '--work-dir', str(tmp_path / 'b'), '--resume'])
    a = safe_torch_load(str(tmp_path / 'a' / 'epoch_2.pth'))['state_dict']
    b = safe_torch_load(str(tmp_path / 'b' / 'epoch_2.pth'))['state_dict']
    assert set(a) == set(b) and any(k.startswith('student.kd_inserts.exit3.') for k in a)
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, different[:5]
