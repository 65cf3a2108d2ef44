"""TAKD (Mirzadeh et al., AAAI 2020): a teacher-assistant chain as two ordinary distillation
configs, the second reading the first's exported student as its teacher (docs/methods/takd.md).

No new machinery: stage 1 is logit KD into the assistant, ``extract_student.py`` turns its
checkpoint into the assistant's plain weights, stage 2 is logit KD from those weights. What is
tested is the hand-over: the configs name each other's files, the export loads strictly into
the assistant's plain config inside stage 2's distiller, and the chain trains through the
command-line tools. The loss itself is mmkd's LogitKD (its fidelity test: tests/test_methods.py);
the authors' objective (imirzadeh/Teacher-Assistant-Knowledge-Distillation, train.py at commit
0f8168f4e7223134361cdd411eba0ab3b1123e29) is written out below and compared on identical logits.
"""
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config

from conftest import DIGITS, REPO, build, random_teacher_checkpoint, run_tool

DIGITS_DIR = osp.join(REPO, 'configs', 'demo', 'digits')
STAGE1 = osp.join(DIGITS_DIR, 'takd', 'takd-ta_resnet34-wide_wrn-16-2_digits.py')
STAGE2 = osp.join(DIGITS_DIR, 'takd', 'takd_wrn-16-2_resnet18-tiny_digits.py')
TAKD = osp.join(REPO, 'configs', 'takd')
CIFAR_STAGE1 = osp.join(TAKD, 'takd-ta_resnet110_resnet20_cifar100.py')
CIFAR_STAGE2 = osp.join(TAKD, 'takd_resnet20_resnet8_cifar100.py')
CIFAR_DIRECT = osp.join(TAKD, 'kd_resnet110_resnet8_cifar100.py')
CIFAR_STUDENT = osp.join(TAKD, 'resnet8_cifar100.py')


def network(model_cfg):
    """A model config without its training loss (the CIFAR stages weight the student's CE by
    0.1; the network, hence the checkpoint layout, is the same)."""
    model = model_cfg.to_dict()
    model['head'].pop('loss', None)
    return model


def work_dir_of(config):
    """tools/train.py's default work dir for a config: work_dirs/<config name>."""
    return osp.join('work_dirs', osp.splitext(osp.basename(config))[0])


@pytest.mark.parametrize('stage1,stage2,epochs', [(STAGE1, STAGE2, 10),
                                                  (CIFAR_STAGE1, CIFAR_STAGE2, 240)],
                         ids=['digits', 'cifar100'])
def test_stage2_teacher_is_stage1_student_exported(stage1, stage2, epochs):
    """Stage 2's teacher is stage 1's student: the same network (stage 1's student config,
    merged, equals stage 2's teacher config but for the CE weight) read from the file the
    documented export writes into stage 1's default work dir."""
    first, second = Config.fromfile(stage1), Config.fromfile(stage2)
    assert first.train_cfg.max_epochs == epochs
    assert second.model.teacher.checkpoint == osp.join(work_dir_of(stage1), 'ta_exported.pth')
    ta_plain = Config.fromfile(second.model.teacher.config)
    assert network(ta_plain.model) == network(first.model.student)
    # the same KD block in both stages
    assert first.model.blocks.to_dict() == second.model.blocks.to_dict()


def test_cifar_direct_baseline_and_chain_share_student_and_loss():
    """The BLKD baseline (teacher -> student directly) trains the chain's final student with
    the chain's loss, from the chain's top teacher."""
    direct, first, second = map(Config.fromfile, (CIFAR_DIRECT, CIFAR_STAGE1, CIFAR_STAGE2))
    assert direct.model.student.to_dict() == second.model.student.to_dict()
    assert network(Config.fromfile(CIFAR_STUDENT).model) == network(second.model.student)
    assert second.model.student.head.loss.loss_weight == 0.1  # CE x (1 - lambda)
    assert direct.model.teacher.to_dict() == first.model.teacher.to_dict()
    assert direct.model.blocks.to_dict() == second.model.blocks.to_dict()
    assert second.model.student.backbone.depth == 8
    assert first.model.student.backbone.depth == 20


def test_stage2_builds_on_an_exported_assistant_and_refuses_the_unexported(tmp_path):
    """Fast, in-process: an assistant checkpoint in the plain layout (what extract_student.py
    writes) loads strictly as stage 2's teacher, weights unchanged; the stage-1 distillation
    checkpoint itself (keys ``student.*``) is refused by the strict load, naming the keys; a
    missing export is refused naming the file."""
    import mmkd  # noqa: F401
    cfg = Config.fromfile(STAGE2)
    ta = random_teacher_checkpoint(cfg.model.teacher.config, str(tmp_path / 'ta.pth'), seed=3)
    cfg.model.teacher.checkpoint = ta
    cfg.model.student.data_preprocessor = dict(type='ClsDataPreprocessor',
                                               **cfg.data_preprocessor)
    distiller = build(cfg.model)
    saved = torch.load(ta, map_location='cpu')['state_dict']
    teacher = distiller.teachers['teacher'] if hasattr(distiller, 'teachers') else None
    assert teacher is not None
    own = teacher.state_dict()
    assert set(own) == set(saved)
    for key, value in saved.items():
        assert torch.equal(own[key], value), key
    # the forgotten export: a distillation checkpoint's student under 'student.'
    unexported = str(tmp_path / 'epoch_10.pth')
    torch.save(dict(state_dict={f'student.{k}': v for k, v in saved.items()}, meta={}),
               unexported)
    cfg.model.teacher.checkpoint = unexported
    with pytest.raises(RuntimeError, match=r"unexpected keys: \d+ \['student\."):
        build(cfg.model)
    # the export not written yet: the missing file is named
    cfg.model.teacher.checkpoint = str(tmp_path / 'stage1' / 'ta_exported.pth')
    with pytest.raises(FileNotFoundError, match='ta_exported.pth: the file does not exist'):
        build(cfg.model)


def authors_takd_loss(output, teacher_outputs, target, T, lambda_):
    """The authors' objective, written out (imirzadeh/Teacher-Assistant-Knowledge-Distillation,
    train.py, TrainManager.train, commit 0f8168f): ``nn.KLDivLoss()`` with its default
    reduction averages over every element (batch x classes), not over the batch."""
    loss_SL = F.cross_entropy(output, target)
    loss_KD = torch.nn.KLDivLoss()(F.log_softmax(output / T, dim=1),
                                   F.softmax(teacher_outputs / T, dim=1))
    return (1 - lambda_) * loss_SL + lambda_ * T * T * loss_KD


def test_authors_objective_is_ce_plus_logitkd_with_weight_lambda_over_classes():
    """What docs/methods/takd.md says: the authors' ``(1 - lambda) CE + lambda T^2 KL`` equals
    CE weighted ``1 - lambda`` plus mmkd's LogitKD(tau=T) weighted ``lambda / C`` (the KL
    averaged over the C classes as well). Loss and gradient w.r.t. the student logits, float64,
    tolerance 1e-12."""
    from mmkd.methods import LogitKD
    torch.manual_seed(0)
    n, c, T, lam = 6, 100, 5.0, 0.7
    s = torch.randn(n, c, dtype=torch.float64, requires_grad=True)
    t = torch.randn(n, c, dtype=torch.float64) * 3
    y = torch.randint(0, c, (n, ))
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # PyTorch's "use batchmean" warning: as the authors
        theirs = authors_takd_loss(s, t, y, T, lam)
    (g_theirs, ) = torch.autograd.grad(theirs, s)
    method = LogitKD(tau=T)
    method.build(s.detach(), t)
    kd = method(s, t)['loss_kd']
    ours = (1 - lam) * F.cross_entropy(s, y) + lam / c * kd
    (g_ours, ) = torch.autograd.grad(ours, s)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(g_ours, g_theirs, rtol=1e-12, atol=1e-12)


def tiny(work_dir):
    """A few iterations: 1 epoch on 10 % of the digits training images (2 batches of 64)."""
    return ['--work-dir', str(work_dir), '--cfg-options', 'train_cfg.max_epochs=1',
            'train_cfg.val_interval=1', 'train_dataloader.dataset.tune_fraction=0.9',
            'default_hooks.checkpoint.interval=1']


@pytest.mark.slow
def test_digits_chain_through_the_tools(tmp_path):
    """Teacher (random weights) -> assistant (tools/train.py) -> export
    (extract_student.py) -> student (tools/train.py, the export as its teacher, strict load),
    as docs/methods/takd.md runs it; the exported assistant equals the stage-1 student."""
    teacher = random_teacher_checkpoint(DIGITS['teacher'], str(tmp_path / 'teacher.pth'))
    w1, w2 = tmp_path / 'stage1', tmp_path / 'stage2'
    out1 = run_tool(['tools/train.py', STAGE1, *tiny(w1),
                     f'model.teacher.checkpoint={teacher}']).stdout
    assert 'distill.logits.loss_kd:' in out1
    exported = str(w1 / 'ta_exported.pth')
    run_tool(['tools/model_converters/extract_student.py', str(w1 / 'epoch_1.pth'), exported])
    ckpt = torch.load(str(w1 / 'epoch_1.pth'), map_location='cpu', weights_only=False)
    plain = torch.load(exported, map_location='cpu', weights_only=False)['state_dict']
    student = {k[len('student.'):]: v for k, v in ckpt['state_dict'].items()
               if k.startswith('student.')}
    assert set(plain) == set(student)
    assert all(torch.equal(plain[k], student[k]) for k in plain)
    out2 = run_tool(['tools/train.py', STAGE2, *tiny(w2),
                     f'model.teacher.checkpoint={exported}']).stdout
    assert 'distill.logits.loss_kd:' in out2 and 'accuracy/top1' in out2
    assert osp.isfile(w2 / 'epoch_1.pth')
    # stage 2's checkpoint holds the student and no teacher (the teacher is the export)
    keys = torch.load(str(w2 / 'epoch_1.pth'), map_location='cpu',
                      weights_only=False)['state_dict']
    assert not any(k.startswith('teacher') for k in keys)
