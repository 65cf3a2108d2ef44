"""Kinds of teacher (mmkd.distillers.teacher_kinds): the student itself (``self:`` points) and
trainable teachers (online / mutual learning), with one optimiser per part
(mmkd.DistillerOptimWrapperConstructor), through tools/train.py, --resume and tools/test.py."""
import os.path as osp
import pickle

import pytest
import torch
from mmengine.optim import OptimWrapperDict
from mmpretrain.structures import DataSample

from conftest import DEMO, REPO, build, digits_cfg, run_tool
from mmkd.utils.checkpoint import safe_torch_load

DML = osp.join(DEMO, 'digits', 'dml_resnet18-tiny_digits.py')


def student_cfg():
    return digits_cfg('unused')['student']


def self_distiller(**teachers):
    model = dict(type='mmkd.Distiller', student=student_cfg(), dry_run_input_shape=(2, 3, 16, 16),
                 blocks=dict(deep=dict(student='backbone.layer3', teacher='self:backbone.layer4',
                                       method=dict(type='FeatureMSE'))))
    if teachers:
        model['teachers'] = teachers
    return build(model)


def dml_distiller(**extra):
    student = student_cfg()
    return build(dict(
        type='mmkd.Distiller', student=student, dry_run_input_shape=(2, 3, 16, 16),
        teachers=dict(peer=dict(model=student, checkpoint=None, trainable=True)),
        blocks=dict(from_peer=dict(student='head.fc', teacher='peer:head.fc', method='LogitKD'),
                    to_peer=dict(student='peer:head.fc', teacher='self:head.fc',
                                 method='LogitKD')), **extra))


def batch(n=4):
    torch.manual_seed(0)
    return torch.randn(n, 3, 16, 16), [DataSample().set_gt_label(i % 10) for i in range(n)]


# ------------------------------------------------------------------ the student itself
def test_self_points_need_no_teacher_and_are_detached_by_default():
    d = self_distiller()
    assert list(d._teachers) == ['self'] and d.teachers == {}
    inputs, samples = batch()
    losses = d.loss(inputs, samples)
    assert set(losses) >= {'student.loss', 'distill.deep.loss_mse'}
    # The teacher value (the deepest stage's output) carries no gradient: the block's loss
    # moves the shallower stages (through the student side) and never the deepest stage.
    d.zero_grad()
    losses['distill.deep.loss_mse'].backward()
    assert all(p.grad is None or not p.grad.any()
               for p in d.student.backbone.layer4.parameters())
    assert any(p.grad is not None and p.grad.any()
               for p in d.student.backbone.layer3.parameters())


def test_self_teacher_keeps_the_gradient_when_asked():
    d = self_distiller(self=dict(detach=False))
    inputs, samples = batch()
    d.loss(inputs, samples)['distill.deep.loss_mse'].backward()
    assert any(p.grad is not None and p.grad.any()
               for p in d.student.backbone.layer4.parameters())


def test_self_teacher_errors_name_the_setting():
    with pytest.raises(KeyError, match=r"teachers.self is the student itself; its only key "
                                        r"is \['detach'\]"):
        self_distiller(self=dict(config='x.py', checkpoint='x.pth'))
    model = dict(type='mmkd.Distiller', student=student_cfg(), dry_run_input_shape=(2, 3, 16, 16),
                 blocks=dict(kd=dict(student='head.fc', teacher='head.fc', method='LogitKD')))
    with pytest.raises(ValueError, match="names no teacher, and this distiller has none.*"
                                         "'self:head.fc'"):
        build(model)
    with pytest.raises(ValueError, match="eval_teacher='self' is the student itself"):
        build(dict(model, eval_teacher='self', blocks=dict(kd=dict(
            student='head.fc', teacher='self:head.fc', method='LogitKD'))))


# ------------------------------------------------------------------ trainable teachers
def test_trainable_teacher_is_a_submodule_with_its_own_losses_and_gradients():
    d = dml_distiller()
    assert 'peer' in d.teachers and list(d.optim_groups()) == ['student', 'peer']
    keys = d.state_dict().keys()
    assert any(k.startswith('trainable_teachers.peer.backbone.') for k in keys)
    d.train()
    assert d.trainable_teachers.peer.training  # it learns: BN in training mode
    inputs, samples = batch()
    losses = d.loss(inputs, samples)
    assert {'student.loss', 'peer.loss', 'distill.from_peer.loss_kd',
            'distill.to_peer.loss_kd'} <= set(losses)

    def moved(term):
        d.zero_grad()
        losses[term].backward(retain_graph=True)
        return {part for part, module in (('student', d.student),
                                          ('peer', d.trainable_teachers.peer))
                if any(p.grad is not None and p.grad.any() for p in module.parameters())}
    # Each term moves only the model that learns from it (the other's value is detached).
    assert moved('distill.from_peer.loss_kd') == {'student'}
    assert moved('distill.to_peer.loss_kd') == {'peer'}
    assert moved('peer.loss') == {'peer'} and moved('student.loss') == {'student'}


def test_trainable_teacher_is_initialised_unless_it_has_a_checkpoint(tmp_path):
    """init_weights() (the Runner's, after the build) initialises a trainable teacher that has
    no checkpoint as the student is initialised, and leaves one loaded from a file alone."""
    d = dml_distiller()
    before = {k: v.clone() for k, v in d.trainable_teachers.peer.state_dict().items()}
    d.init_weights()
    changed = [k for k, v in d.trainable_teachers.peer.state_dict().items()
               if not torch.equal(v, before[k])]
    assert any(k.startswith('backbone.') for k in changed)
    path = str(tmp_path / 'peer.pth')
    torch.save(dict(state_dict=before), path)
    student = student_cfg()
    d = build(dict(
        type='mmkd.Distiller', student=student, dry_run_input_shape=(2, 3, 16, 16),
        teachers=dict(peer=dict(model=student, checkpoint=path, trainable=True)),
        blocks=dict(kd=dict(student='head.fc', teacher='peer:head.fc', method='LogitKD'))))
    d.init_weights()
    assert all(torch.equal(v, before[k])
               for k, v in d.trainable_teachers.peer.state_dict().items())


def test_mutual_learning_equals_the_authors_dml_losses():
    """DML's authors (YingZhangDUT/Deep-Mutual-Learning 34a2058, train_models.py,
    ``_tower_loss`` and ``kl_loss_compute``): network i minimises
    ``CE(z_i, y) + mean_n sum_c p_j log(1e-8 + p_j / (p_i + 1e-8))`` over its own variables
    (TensorFlow: the gradient of net i's loss w.r.t. net i's variables only, so p_j is a
    constant for it), both networks updated from one forward. Our two LogitKD blocks (tau 1)
    with the student and the trainable peer give each network exactly that gradient, float64;
    the authors' formula is written out below without its two 1e-8 guards (which move a
    gradient by up to 3e-8 here): rtol 1e-9."""
    import torch.nn.functional as F
    d = dml_distiller().double()
    d.train()
    inputs, samples = batch(8)
    inputs = inputs.double()
    total = sum(v for k, v in d.loss(inputs, samples).items() if 'loss' in k)
    nets = dict(student=d.student, peer=d.trainable_teachers.peer)
    ours = {n: torch.autograd.grad(total, list(m.parameters()), allow_unused=True)
            for n, m in nets.items()}
    labels = torch.tensor([s.gt_label.item() for s in samples])
    logits = {n: m(inputs, mode='tensor') for n, m in nets.items()}

    def kl_loss_compute(logits1, logits2):  # the authors' function, in torch
        pred1, pred2 = F.softmax(logits1, 1), F.softmax(logits2, 1)
        return (pred2 * torch.log(pred2 / pred1)).sum(1).mean()  # (their 1e-8 guards left out)
    for i, j in (('student', 'peer'), ('peer', 'student')):
        net_loss = F.cross_entropy(logits[i], labels) + kl_loss_compute(logits[i], logits[j])
        theirs = torch.autograd.grad(net_loss, list(nets[i].parameters()), retain_graph=True,
                                     allow_unused=True)
        for a, b in zip(ours[i], theirs):
            if b is None:
                assert a is None or not a.any()
                continue
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_online_ensemble_each_network_learns_from_all_detached():
    """The online ensemble of docs/methods/online_distillation.md: each network learns from
    EnsembleKD over every network's detached logits (its own included); each block moves only
    its learner, and its loss equals KL(softmax(mean logits / tau) || softmax(z / tau)) tau^2
    written out (float64, rtol 1e-10)."""
    import torch.nn.functional as F
    student = student_cfg()
    method = dict(type='EnsembleKD', combine='mean_logit', tau=3.0)
    d = build(dict(
        type='mmkd.Distiller', student=student, dry_run_input_shape=(2, 3, 16, 16),
        teachers=dict(peer=dict(model=student, checkpoint=None, trainable=True)),
        blocks=dict(student=dict(student='head.fc', teacher=['self:head.fc', 'peer:head.fc'],
                                 method=method),
                    peer=dict(student='peer:head.fc', teacher=['self:head.fc', 'peer:head.fc'],
                              method=method)))).double()
    d.train()
    inputs, samples = batch()
    losses = d.loss(inputs.double(), samples)
    nets = dict(student=d.student, peer=d.trainable_teachers.peer)
    logits = {n: m(inputs.double(), mode='tensor') for n, m in nets.items()}
    target = F.softmax((logits['student'] + logits['peer']).detach() / 2 / 3.0, 1)
    for name, net in nets.items():
        expected = F.kl_div(F.log_softmax(logits[name] / 3.0, 1), target,
                            reduction='batchmean') * 9.0
        torch.testing.assert_close(losses[f'distill.{name}.loss_kd'], expected, rtol=1e-10,
                                   atol=0)
        d.zero_grad()
        losses[f'distill.{name}.loss_kd'].backward(retain_graph=True)
        for other, module in nets.items():
            moved = any(p.grad is not None and p.grad.any() for p in module.parameters())
            assert moved == (other == name), (name, other)


def test_learner_must_be_a_trainable_teacher(teacher_ckpts):
    model = digits_cfg(teacher_ckpts['digits'], blocks=dict(kd=dict(
        student='teacher:head.fc', teacher='head.fc', method='LogitKD')))
    with pytest.raises(KeyError, match="names 'teacher', which is not a trainable teacher"):
        build(model)


def test_frozen_teacher_needs_a_checkpoint_and_trainable_is_a_bool():
    student = student_cfg()
    blocks = dict(kd=dict(student='head.fc', teacher='head.fc', method='LogitKD'))
    with pytest.raises(ValueError, match='checkpoint=None is only for a trainable teacher'):
        build(dict(type='mmkd.Distiller', student=student, blocks=blocks,
                   teacher=dict(model=student, checkpoint=None)))
    with pytest.raises(TypeError, match=r'teacher.trainable must be True .* got 1'):
        build(dict(type='mmkd.Distiller', student=student, blocks=blocks,
                   teacher=dict(model=student, checkpoint=None, trainable=1)))


def test_optim_wrapper_constructor_gives_each_part_its_optimiser():
    from mmengine.optim import build_optim_wrapper
    d = dml_distiller()
    sgd = dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.1))
    wrappers = build_optim_wrapper(d, dict(
        constructor='mmkd.DistillerOptimWrapperConstructor', student=sgd,
        peer=dict(sgd, optimizer=dict(type='SGD', lr=0.05))))
    assert isinstance(wrappers, OptimWrapperDict) and list(wrappers.keys()) == ['student', 'peer']
    in_student = {id(p) for g in wrappers['student'].param_groups for p in g['params']}
    in_peer = {id(p) for g in wrappers['peer'].param_groups for p in g['params']}
    assert in_student == {id(p) for n, p in d.named_parameters()
                          if not n.startswith('trainable_teachers.')}
    assert in_peer == {id(p) for p in d.trainable_teachers.peer.parameters()}
    assert wrappers['peer'].get_lr()['lr'] == [0.05]
    with pytest.raises(KeyError, match=r"unknown part\(s\) \['pear'\], missing part\(s\) "
                                       r"\['peer'\]; this distiller's parts are "
                                       r"\['student', 'peer'\]"):
        build_optim_wrapper(d, dict(constructor='mmkd.DistillerOptimWrapperConstructor',
                                    student=sgd, pear=sgd))


def test_several_optimisers_refuse_mixed_precision():
    from mmengine.optim import AmpOptimWrapper, OptimWrapper
    from mmkd.distillers.distiller import _Wrappers
    d = dml_distiller()
    plain = OptimWrapper(torch.optim.SGD(d.student.parameters(), lr=0.1))
    amp = AmpOptimWrapper.__new__(AmpOptimWrapper)  # (its constructor needs a GPU)
    with pytest.raises(TypeError, match=r"parts \['peer'\] use AmpOptimWrapper"):
        _Wrappers(OptimWrapperDict(student=plain, peer=amp))


# ------------------------------------------------------------------ through the tools
def _dml_config(tmp_path, name, interrupt=None, epochs=2):
    lines = [f'_base_ = {DML!r}',
             f'train_cfg = dict(max_epochs={epochs}, val_interval=1)',
             'train_dataloader = dict(batch_size=32, dataset=dict(indices=96))',
             'val_dataloader = dict(dataset=dict(indices=64))',
             'test_dataloader = val_dataloader',
             'default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=3), '
             'logger=dict(interval=1))']
    if interrupt:
        lines += ["custom_imports = dict(imports=['mmkd', 'interrupt_hook'])",
                  f'custom_hooks = [dict(type="InterruptTrainingAt", {interrupt})]']
    path = tmp_path / f'{name}.py'
    path.write_text('\n'.join(lines) + '\n')
    return str(path)


def test_mutual_learning_trains_and_tests_and_exports_each_model(tmp_path):
    """DML through tools/train.py with two optimisers (one epoch); tools/test.py scores the
    student and, with --teacher peer, the peer from the same file; the peer exported alone
    predicts exactly as inside the distiller. (Resuming it bit-exactly: the slow test below
    and tests/test_resume.py's grid of every demo config.)"""
    full = _dml_config(tmp_path, 'full', epochs=1)
    work = tmp_path / 'full'
    out = run_tool(['tools/train.py', full, '--work-dir', str(work)]).stdout
    assert 'student.lr:' in out and 'peer.lr:' in out and 'peer.loss:' in out
    ckpt = str(work / 'epoch_1.pth')
    a = safe_torch_load(ckpt)
    assert any(k.startswith('trainable_teachers.peer.') for k in a['state_dict'])
    assert set(a['optimizer']) == {'student', 'peer'}
    run_tool(['tools/test.py', full, ckpt, '--work-dir', str(tmp_path / 't1')])
    peer = run_tool(['tools/test.py', full, ckpt, '--teacher', 'peer', '--out',
                     str(tmp_path / 'in_run.pkl'), '--work-dir', str(tmp_path / 't2')]).stdout
    assert 'accuracy/top1: ' in peer
    # Exported alone (its weights and, from the run record, its config), the peer predicts
    # exactly as it did inside the distiller.
    out = run_tool(['tools/model_converters/extract_student.py', ckpt, str(tmp_path / 'peer.pth'),
                    '--model', 'peer', '--config-out', str(tmp_path / 'peer.py')]).stdout
    assert "tensors of the teacher 'peer'" in out
    run_tool(['tools/test.py', str(tmp_path / 'peer.py'), str(tmp_path / 'peer.pth'), '--out',
              str(tmp_path / 'alone.pkl'), '--work-dir', str(tmp_path / 't4')])
    in_run, alone = (pickle.load(open(tmp_path / f, 'rb')) for f in ('in_run.pkl', 'alone.pkl'))
    assert len(in_run) == len(alone) == 64
    assert all(torch.equal(a['pred_score'], b['pred_score']) for a, b in zip(in_run, alone))
    wrong = run_tool(['tools/model_converters/extract_student.py', ckpt,
                      str(tmp_path / 'x.pth'), '--model', 'pear'], check=False)
    assert wrong.returncode != 0 and "holds ['peer']" in wrong.stdout
    # The peer is read from the run's checkpoint: without its weights there, it is refused.
    stripped = tmp_path / 'no_peer.pth'
    torch.save(dict(a, state_dict={k: v for k, v in a['state_dict'].items()
                                   if not k.startswith('trainable_teachers.')}), stripped)
    refused = run_tool(['tools/test.py', full, str(stripped), '--teacher', 'peer',
                        '--work-dir', str(tmp_path / 't3')], check=False)
    assert refused.returncode != 0 and 'does not hold' in refused.stdout
    missing = run_tool(['tools/test.py', full, '--teacher', 'peer'], check=False)
    assert missing.returncode != 0 and 'give the run\'s CHECKPOINT' in missing.stdout


@pytest.mark.slow
def test_mutual_learning_resumes_bit_exactly(tmp_path):
    """Interrupted after epoch 1 of 2 and resumed: both networks and both optimisers' states
    equal the uninterrupted run's, bit for bit."""
    full = _dml_config(tmp_path, 'full')
    run_tool(['tools/train.py', full, '--work-dir', str(tmp_path / 'full')])
    cut = _dml_config(tmp_path, 'cut', 'epoch=1')
    work = tmp_path / 'cut'
    first = run_tool(['tools/train.py', cut, '--work-dir', str(work)], check=False,
                     env=dict(PYTHONPATH=osp.join(REPO, 'tests')))
    assert first.returncode != 0 and (work / 'epoch_1.pth').exists()
    run_tool(['tools/train.py', full, '--work-dir', str(work), '--resume'])
    a = safe_torch_load(str(tmp_path / 'full' / 'epoch_2.pth'))
    b = safe_torch_load(str(work / 'epoch_2.pth'))
    different = [k for k in a['state_dict'] if not torch.equal(a['state_dict'][k],
                                                               b['state_dict'][k])]
    assert not different, different[:5]
    for part in ('student', 'peer'):
        sa, sb = a['optimizer'][part]['state'], b['optimizer'][part]['state']
        assert sa.keys() == sb.keys() and all(
            torch.equal(sa[i]['momentum_buffer'], sb[i]['momentum_buffer']) for i in sa)
