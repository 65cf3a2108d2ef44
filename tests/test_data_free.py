"""Data-free distillation (DAFL, DFAD, ZSKT): each loss against the authors' formulation written
out (loss and gradient, float64, tolerance 1e-10 unless stated), the generators against the
authors' modules, one train step against the authors' training loops, the two optimisers kept
apart, no real image reaching the student, and tools/train.py, resume, export and test.

The authors' code read (each formulation below is theirs, rewritten here):
  DAFL  huawei-noah/Efficient-Computing, Data-Efficient-Model-Compression/DAFL/DAFL-train.py,
        commit 225ddd2e6ca41915434557f7f49d395e4f801e3e
  DFAD  VainF/Data-Free-Adversarial-Distillation, DFAD_cifar.py + network/gan.py,
        commit c161591aae4c13e53943dcb61c162876421aad7a
  ZSKT  polo5/ZeroShotKnowledgeTransfer, solver.py + models/generator.py + utils/loaders.py,
        commit e24915d713672554800372c777c9014e3399e13b
"""
import copy
import os.path as osp
import re

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.optim import OptimWrapper, OptimWrapperDict

import mmkd  # noqa: F401
import mmkd.distillers.data_free  # noqa: F401
from mmkd.datasets.latent import SEED_STRIDE, LatentDataset
from mmkd.distillers.data_free import DataFreeDistiller
from mmkd.methods import AT
from mmkd.methods.data_free_losses import DAFLGeneratorLoss, LogitL1, ZSKTKL
from mmkd.models.generators import DAFLGenerator, ZSKTGenerator
from mmkd.registry import MODELS

from conftest import DEMO, DIGITS, REPO, run_tool

DAFL_CONFIG = osp.join(DEMO, 'digits', 'dafl_resnet34-wide_resnet18-tiny_digits.py')
TOL = 1e-10  # float64


# ------------------------------------------------------------------ the authors' formulations
def authors_dafl_generator_loss(outputs_T, features_T, oh, ie, a):
    """DAFL-train.py, the generator's loss (lines 'pred = ...' to 'loss = ...')."""
    criterion = torch.nn.CrossEntropyLoss()
    pred = outputs_T.data.max(1)[1]
    loss_activation = -features_T.abs().mean()
    loss_one_hot = criterion(outputs_T, pred)
    softmax_o_T = torch.nn.functional.softmax(outputs_T, dim=1).mean(dim=0)
    loss_information_entropy = (softmax_o_T * torch.log10(softmax_o_T)).sum()
    return loss_one_hot * oh + loss_information_entropy * ie + loss_activation * a


def authors_dafl_kdloss(y, teacher_scores):
    """DAFL-train.py ``kdloss`` (size_average=False is reduction='sum')."""
    p = F.log_softmax(y, dim=1)
    q = F.softmax(teacher_scores, dim=1)
    return F.kl_div(p, q, reduction='sum') / y.shape[0]


def authors_zskt_divergence(student_logits, teacher_logits, T):
    """solver.py ``divergence``: F.kl_div's default reduction, the mean over all elements."""
    return F.kl_div(F.log_softmax(student_logits / T, dim=1),
                    F.softmax(teacher_logits / T, dim=1), reduction='mean')


def authors_zskt_attention_diff(x, y):
    """solver.py ``attention`` / ``attention_diff`` (Zagoruyko's AT)."""
    def attention(v):
        return F.normalize(v.pow(2).mean(1).view(v.size(0), -1))
    return (attention(x) - attention(y)).pow(2).mean()


class AuthorsDAFLGenerator(nn.Module):
    """DAFL-train.py ``Generator`` (opt.* as arguments); DFAD's GeneratorA is this with
    ngf * 2 = 128 and BatchNorm2d's default eps."""

    def __init__(self, latent_dim, img_size, channels, eps=0.8):
        super().__init__()
        self.init_size = img_size // 4
        self.l1 = nn.Sequential(nn.Linear(latent_dim, 128 * self.init_size ** 2))
        self.conv_blocks0 = nn.Sequential(nn.BatchNorm2d(128))
        self.conv_blocks1 = nn.Sequential(
            nn.Conv2d(128, 128, 3, stride=1, padding=1), nn.BatchNorm2d(128, eps),
            nn.LeakyReLU(0.2, inplace=True))
        self.conv_blocks2 = nn.Sequential(
            nn.Conv2d(128, 64, 3, stride=1, padding=1), nn.BatchNorm2d(64, eps),
            nn.LeakyReLU(0.2, inplace=True), nn.Conv2d(64, channels, 3, stride=1, padding=1),
            nn.Tanh(), nn.BatchNorm2d(channels, affine=False))

    def forward(self, z):
        out = self.l1(z)
        out = out.view(out.shape[0], 128, self.init_size, self.init_size)
        img = self.conv_blocks0(out)
        img = nn.functional.interpolate(img, scale_factor=2)
        img = self.conv_blocks1(img)
        img = nn.functional.interpolate(img, scale_factor=2)
        return self.conv_blocks2(img)


class AuthorsZSKTGenerator(nn.Module):
    """models/generator.py ``Generator`` (32x32: 8**2; here img_size // 4)."""

    def __init__(self, z_dim, img_size):
        super().__init__()
        s = img_size // 4

        class View(nn.Module):
            def forward(self, t):
                return t.view((-1, 128, s, s))
        self.layers = nn.Sequential(
            nn.Linear(z_dim, 128 * s ** 2), View(), nn.BatchNorm2d(128),
            nn.Upsample(scale_factor=2), nn.Conv2d(128, 128, 3, stride=1, padding=1),
            nn.BatchNorm2d(128), nn.LeakyReLU(0.2, inplace=True),
            nn.Upsample(scale_factor=2), nn.Conv2d(128, 64, 3, stride=1, padding=1),
            nn.BatchNorm2d(64), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(64, 3, 3, stride=1, padding=1), nn.BatchNorm2d(3, affine=True))

    def forward(self, z):
        return self.layers(z)


# ------------------------------------------------------------------ losses
def _leaf(*shape, scale=1.0):
    return (torch.randn(*shape, dtype=torch.float64) * scale).requires_grad_()


def built(method, s, t):
    method.build(s, t)  # what the distiller's dry run does
    return method


def _grads(loss, *tensors):
    return torch.autograd.grad(loss, tensors)


def test_dafl_generator_loss_equals_the_authors_loss_and_gradient():
    torch.manual_seed(0)
    logits, features = _leaf(16, 10, scale=3), _leaf(16, 32)
    method = DAFLGeneratorLoss(one_hot=1.0, activation=0.1, information_entropy=5.0)
    out = method(None, [logits, features])
    assert set(out) == {'loss_one_hot', 'loss_activation', 'loss_information_entropy'}
    ours = sum(out.values())
    ref = authors_dafl_generator_loss(logits, features, oh=1.0, ie=5.0, a=0.1)
    assert abs(ours.item() - ref.item()) < TOL
    for g, r in zip(_grads(ours, logits, features), _grads(ref, logits, features)):
        assert torch.allclose(g, r, atol=TOL, rtol=0)
    # MMRazor's CIFAR-10 weights (0.05, 0.01, 5), and each term alone
    out = DAFLGeneratorLoss(0.05, 0.01, 5.0)(None, [logits, features])
    assert abs(sum(out.values()).item() - authors_dafl_generator_loss(
        logits, features, 0.05, 5.0, 0.01).item()) < TOL
    # information entropy is the negative base-10 entropy of the mean prediction: -log10(K)
    # at a uniform mean (its minimum), 0 when every image is one class
    uniform = torch.eye(10, dtype=torch.float64) * 50
    ie = DAFLGeneratorLoss(0, 0, 1.0)(None, [uniform, uniform])['loss_information_entropy']
    assert abs(ie.item() + 1.0) < 1e-9
    with pytest.raises(ValueError, match='two teacher values'):
        method(None, logits)


def test_dafl_student_loss_is_logit_kd_at_tau_1():
    torch.manual_seed(1)
    s, t = _leaf(8, 10, scale=2), torch.randn(8, 10, dtype=torch.float64) * 3
    ours = built(MODELS.build(dict(type='LogitKD', tau=1.0)), s, t)(s, t)['loss_kd']
    ref = authors_dafl_kdloss(s, t)
    assert abs(ours.item() - ref.item()) < TOL
    assert torch.allclose(_grads(ours, s)[0], _grads(ref, s)[0], atol=TOL, rtol=0)


def test_dfad_l1_for_the_student_and_negated_for_the_generator():
    torch.manual_seed(2)
    s, t = _leaf(8, 10, scale=2), _leaf(8, 10, scale=2)
    ours = built(LogitL1(), s, t)(s, t)['loss_l1']
    ref = F.l1_loss(s, t)  # DFAD_cifar.py: loss_S = F.l1_loss(s_logit, t_logit.detach())
    assert abs(ours.item() - ref.item()) < TOL
    # the generator's -L1 reaches both logits (loss_G = -F.l1_loss(s_logit, t_logit))
    for g, r in zip(_grads(-ours, s, t), _grads(-ref, s, t)):
        assert torch.allclose(g, r, atol=TOL, rtol=0)
    with pytest.raises(ValueError, match='same shape'):
        LogitL1().build(torch.zeros(2, 10), torch.zeros(2, 5))


@pytest.mark.filterwarnings('ignore:reduction')  # F.kl_div's 'mean': the authors' choice
@pytest.mark.parametrize('tau', [1.0, 4.0])
def test_zskt_kl_and_attention_equal_the_authors(tau):
    torch.manual_seed(3)
    s, t = _leaf(8, 10, scale=2), _leaf(8, 10, scale=2)
    ours = built(ZSKTKL(tau=tau), s, t)(s, t)['loss_kl']
    ref = authors_zskt_divergence(s, t, tau)
    assert abs(ours.item() - ref.item()) < TOL
    for g, r in zip(_grads(ours, s, t), _grads(ref, s, t)):
        assert torch.allclose(g, r, atol=TOL, rtol=0)
    # = LogitKD / (K tau^2): the paper's beta 250 is against this scale
    kd = built(MODELS.build(dict(type='LogitKD', tau=tau)), s, t)(s, t)['loss_kd']
    assert abs(ours.item() - kd.item() / (10 * tau ** 2)) < TOL
    # KT_loss_student's AT term: beta * sum over the stages of attention_diff = AT x 250
    fs = [_leaf(4, 8, 8, 8), _leaf(4, 16, 4, 4)]
    ft = [torch.randn(4, 16, 8, 8, dtype=torch.float64), torch.randn(4, 32, 4, 4,
                                                                      dtype=torch.float64)]
    at = AT()
    at.build(fs, ft)
    ours = 250 * at(fs, ft)['loss_at']
    ref = sum(250 * authors_zskt_attention_diff(a, b) for a, b in zip(fs, ft))
    assert abs(ours.item() - ref.item()) < 1e-6 * abs(ref.item())  # AT computes in float32
    for g, r in zip(_grads(ours, *fs), _grads(ref, *fs)):
        assert torch.allclose(g, r, rtol=0, atol=1e-5 * r.abs().max().item())


# ------------------------------------------------------------------ generators
@pytest.mark.parametrize('eps', [0.8, 1e-5])  # DAFL's generator, DFAD's GeneratorA
def test_dafl_generator_is_the_authors_network(eps):
    torch.manual_seed(4)
    ours = DAFLGenerator(latent_dim=20, img_size=16, channels=3, bn_eps=eps)
    theirs = AuthorsDAFLGenerator(latent_dim=20, img_size=16, channels=3, eps=eps)
    theirs.load_state_dict(ours.state_dict())  # the authors' module names: strict
    z = torch.randn(6, 20)
    out = ours(z)
    assert out.shape == (6, 3, 16, 16)
    assert torch.equal(out, theirs(z))
    assert torch.equal(ours(z.view(6, 20, 1, 1)), theirs(z))  # DFAD's (N, nz, 1, 1) latents
    # the last BN (no affine): every channel has zero mean over the batch
    assert out.mean(dim=(0, 2, 3)).abs().max() < 1e-5
    with pytest.raises(ValueError, match='multiple of 4'):
        DAFLGenerator(img_size=18, channels=3)


def test_zskt_generator_is_the_authors_network():
    torch.manual_seed(5)
    ours = ZSKTGenerator(latent_dim=20, img_size=32, channels=3)
    theirs = AuthorsZSKTGenerator(z_dim=20, img_size=32)
    theirs.load_state_dict(ours.state_dict())
    z = torch.randn(4, 20)
    assert torch.equal(ours(z), theirs(z))


def test_latent_dataset():
    data = LatentDataset(num_samples=10, seed=3)
    assert len(data) == 10 and int(data[4]['inputs']) == 3 * SEED_STRIDE + 4
    assert len(LatentDataset(10, indices=4)) == 4  # as MMEngine datasets' `indices`
    assert len(LatentDataset(10, tune_fraction=0.2)) == 10  # no images to hold out
    assert [int(d['inputs']) for d in LatentDataset(10, indices=[7, 2])] == [7, 2]
    with pytest.raises(TypeError, match='unknown arguments'):
        LatentDataset(10, data_root='x')
    with pytest.raises(ValueError):
        LatentDataset(0)


# ------------------------------------------------------------------ the distiller
@pytest.fixture(scope='module')
def digits_teacher(tmp_path_factory):
    from conftest import random_teacher_checkpoint
    return random_teacher_checkpoint(DIGITS['teacher'], str(
        tmp_path_factory.mktemp('df') / 'teacher.pth'))


def build(teacher_ckpt, **overrides):
    cfg = Config.fromfile(DAFL_CONFIG)
    model = copy.deepcopy(cfg.model.to_dict())
    model['student']['data_preprocessor'] = copy.deepcopy(cfg.data_preprocessor.to_dict())
    model['teacher']['checkpoint'] = teacher_ckpt
    model['generator']['latent_dim'] = 8
    model['generator']['hidden_channels'] = 16
    model.update(overrides)
    return MODELS.build(model)


DFAD = dict(blocks=dict(logits=dict(student='head.fc', teacher='head.fc', method='LogitL1')),
            generator_loss=dict(type='adversarial'), student_steps=2, student_first=True,
            latents='fresh')


def wrappers(d, lr_s=0.1, lr_g=1e-3):
    groups = d.optim_groups()
    assert set(groups) == {'student', 'generator'}
    return OptimWrapperDict(
        student=OptimWrapper(torch.optim.SGD(groups['student'].parameters(), lr=lr_s,
                                             momentum=0.9, weight_decay=5e-4)),
        generator=OptimWrapper(torch.optim.Adam(groups['generator'].parameters(), lr=lr_g)))


def seeds(n=8):
    return dict(inputs=[torch.tensor(i) for i in range(n)])


def fixed_latents(d, zs):
    """Replace the distiller's latent sampler with the given latents, in order."""
    queue = list(zs)

    def sampler(batch_seeds):
        return lambda: queue.pop(0).clone()
    d.latent_sampler = sampler
    return queue


def params(module):
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def same(a, b, atol=0.0):
    return all(torch.allclose(a[k], b[k], atol=atol, rtol=0) for k in a)


def test_dfad_train_step_equals_the_authors_loop(digits_teacher):
    """DFAD_cifar.py ``train``, one iteration with 2 student updates, on copies of the models:
    the same student and generator weights afterwards (float32, atol 1e-6)."""
    d = build(digits_teacher, **DFAD)
    assert isinstance(d, DataFreeDistiller)
    d.train()
    student, generator = copy.deepcopy(d.student), copy.deepcopy(d.generator)
    teacher = d.teacher
    opt_s = torch.optim.SGD(student.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    opt_g = torch.optim.Adam(generator.parameters(), lr=1e-3)
    torch.manual_seed(6)
    zs = [torch.randn(8, 8) for _ in range(3)]
    # the authors' loop
    for k in range(2):
        opt_s.zero_grad()
        fake = generator(zs[k]).detach()
        t_logit = teacher(fake)
        s_logit = student(fake)
        F.l1_loss(s_logit, t_logit.detach()).backward()
        opt_s.step()
    opt_g.zero_grad()
    fake = generator(zs[2])
    loss_g = -F.l1_loss(student(fake), teacher(fake))
    loss_g.backward()
    opt_g.step()
    # ours
    fixed_latents(d, zs)
    log = d.train_step(seeds(), wrappers(d))
    assert same(params(d.student), params(student), atol=1e-6)
    assert same(params(d.generator), params(generator), atol=1e-6)
    assert abs(log['generator.loss_adversarial'].item() - loss_g.item()) < 1e-6
    assert 'distill.logits.loss_l1' in log
    # the adversarial loss reached the student too; no gradient is left over for its update
    assert all(p.grad is None or not p.grad.any() for p in d.student.parameters())


def test_dafl_train_step_equals_the_authors_joint_step(digits_teacher):
    """DAFL-train.py, one iteration (generator loss + KD back-propagated together, then both
    optimisers step), on copies: the same weights (float32, atol 1e-6)."""
    d = build(digits_teacher)  # the demo config: DAFL, student first, shared latents
    d.train()
    student, generator, teacher = copy.deepcopy(d.student), copy.deepcopy(d.generator), d.teacher
    # SGD here (the authors' MNIST run uses Adam for both): Adam's first step, lr * g / (|g| +
    # 1e-8), turns float32 rounding differences of gradients near 1e-8 into a fraction of lr,
    # which would hide what this test compares (the losses and the order of the updates).
    opt_s = torch.optim.SGD(student.parameters(), lr=0.1)
    opt_g = torch.optim.SGD(generator.parameters(), lr=0.1)
    torch.manual_seed(7)
    z = torch.randn(8, 8)
    # the authors' step; outputs_T, features_T = teacher(gen_imgs, out_feature=True)
    opt_g.zero_grad()
    opt_s.zero_grad()
    gen_imgs = generator(z)
    features_T = teacher.head.pre_logits(teacher.extract_feat(gen_imgs))
    outputs_T = teacher.head.fc(features_T)
    loss = authors_dafl_generator_loss(outputs_T, features_T, oh=1.0, ie=5.0, a=0.1)
    loss_kd = authors_dafl_kdloss(student(gen_imgs.detach()), outputs_T.detach())
    (loss + loss_kd).backward()
    opt_g.step()
    opt_s.step()
    # ours
    fixed_latents(d, [z])
    groups = d.optim_groups()
    ow = OptimWrapperDict(
        student=OptimWrapper(torch.optim.SGD(groups['student'].parameters(), lr=0.1)),
        generator=OptimWrapper(torch.optim.SGD(groups['generator'].parameters(), lr=0.1)))
    log = d.train_step(seeds(), ow)
    assert same(params(d.student), params(student), atol=1e-6)
    assert same(params(d.generator), params(generator), atol=1e-6)
    assert abs(log['distill.logits.loss_kd'].item() - loss_kd.item()) < 1e-5
    assert abs(log['generator.loss'].item() - loss.item()) < 1e-5


def test_zskt_order_generator_first_on_shared_latents(digits_teacher):
    """ZSKT (solver.py): one generator update, then the student updates on the *same* latents,
    regenerated by the updated generator (LearnableLoader), KL-only generator loss."""
    at = dict(student=['backbone.layer1', 'backbone.layer2'],
              teacher=['backbone.layer1', 'backbone.layer2'], method='AT', loss_weight=250.0)
    d = build(digits_teacher, blocks=dict(
        logits=dict(student='head.fc', teacher='head.fc', method='ZSKTKL'), at=at),
        generator_loss=dict(type='adversarial', blocks=['logits']), student_steps=3,
        student_first=False, latents='shared')
    d.train()
    seen = []
    d.student.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    made = []
    d.generator.register_forward_hook(lambda m, a, out: made.append(out.detach().clone()))
    torch.manual_seed(8)
    fixed_latents(d, [torch.randn(8, 8)])  # a single draw serves the whole iteration
    log = d.train_step(seeds(), wrappers(d))
    assert len(made) == 4 and len(seen) == 4  # 1 generator + 3 student updates
    assert torch.equal(seen[0], made[0])
    assert not torch.equal(made[1], made[0])  # regenerated by the updated generator
    assert torch.equal(made[1], made[2])  # ... the generator unchanged over the student's
    assert {'distill.logits.loss_kl', 'distill.at.loss_at', 'generator.loss_adversarial'} <= \
        set(log)


def test_each_part_moves_only_under_its_own_optimiser_and_no_real_image(digits_teacher):
    d = build(digits_teacher, **DFAD)
    d.train()
    for lr_s, lr_g in ((0.0, 1e-3), (0.1, 0.0)):
        before_s, before_g = params(d.student), params(d.generator)
        ow = wrappers(d, lr_s, lr_g)
        for group in ow['student'].optimizer.param_groups:
            group['weight_decay'] = 0.0
        d.train_step(seeds(), ow)
        assert same(params(d.student), before_s) == (lr_s == 0.0)
        assert same(params(d.generator), before_g) == (lr_g == 0.0)
    # every image the student sees in training is a generator output (repeated to the
    # student's 3 channels when the generator makes one)
    made, seen = [], []
    h1 = d.generator.register_forward_hook(
        lambda m, a, out: made.append(out.detach().expand(-1, 3, -1, -1)))
    h2 = d.student.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach()))
    d.train_step(seeds(), wrappers(d))
    h1.remove(), h2.remove()
    assert len(seen) == 3 and all(any(torch.equal(s, m) for m in made) for s in seen)
    # a batch of real images is refused, naming the latent dataset
    with pytest.raises(ValueError, match='LatentDataset'):
        d.train_step(dict(inputs=[torch.zeros(3, 16, 16, dtype=torch.uint8)] * 4,
                          data_samples=None), wrappers(d))
    with pytest.raises(TypeError, match="'student' and 'generator'"):
        d.train_step(seeds(), OptimWrapper(torch.optim.SGD(d.parameters(), lr=0.1)))


@pytest.mark.parametrize('channels', [1, 3])
def test_a_one_channel_generator_is_repeated_to_the_students_channels(digits_teacher,
                                                                       channels):
    d = build(digits_teacher, generator=dict(type='mmkd.DAFLGenerator', latent_dim=8,
                                             hidden_channels=16, channels=channels))
    assert d.generator.channels == channels
    x = d.generate(torch.randn(4, 8))
    assert x.shape == (4, 3, 16, 16)
    assert torch.equal(x[:, 0], x[:, 2]) == (channels == 1)
    with pytest.raises(ValueError, match='student takes'):
        build(digits_teacher, generator=dict(type='mmkd.DAFLGenerator', channels=2))


def test_latents_depend_on_the_seeds_and_the_iteration_only(digits_teacher):
    from mmengine.logging import MessageHub
    d = build(digits_teacher, **DFAD)
    hub = MessageHub.get_current_instance()
    old = hub.get_info('iter')
    try:
        hub.update_info('iter', 5)
        a = d.latent_sampler([1, 2, 3])()
        torch.manual_seed(123)  # the global random state plays no part
        assert torch.equal(a, d.latent_sampler([1, 2, 3])())
        assert not torch.equal(a, d.latent_sampler([1, 2, 4])())
        hub.update_info('iter', 6)
        assert not torch.equal(a, d.latent_sampler([1, 2, 3])())
    finally:
        hub.update_info('iter', old)


def test_build_errors(digits_teacher):
    with pytest.raises(ValueError, match='generator_loss'):
        build(digits_teacher, generator_loss=dict(type='gan'))
    with pytest.raises(KeyError, match='unknown block'):
        build(digits_teacher, generator_loss=dict(type='adversarial', blocks=['nope']))
    with pytest.raises(KeyError, match='unknown keys'):
        build(digits_teacher, generator_loss=dict(type='dafl', oh=1.0))
    with pytest.raises(ValueError, match='student_steps'):
        build(digits_teacher, student_steps=0)
    with pytest.raises(ValueError, match='latents'):
        build(digits_teacher, latents='new')
    with pytest.raises(TypeError, match='latent_dim'):
        build(digits_teacher, generator=dict(type='mmkd.DAFLGenerator', latent_dim='big'))
    with pytest.raises(ValueError, match='student takes'):  # not the student's 16x16
        build(digits_teacher, generator=dict(type='mmkd.DAFLGenerator', img_size=32))
    with pytest.raises(RuntimeError, match='train_step'):
        build(digits_teacher).loss(torch.zeros(2, 3, 16, 16), None)


# ------------------------------------------------------------------ tools
def _config(tmp_path, teacher_ckpt, name, lines=()):
    text = [f'_base_ = {DAFL_CONFIG!r}',
            "custom_imports = dict(imports=['mmkd', 'mmkd.distillers.data_free', "
            "'mmkd.distillers.optim'], allow_failed_imports=False)",
            f'model = dict(teacher=dict(checkpoint={teacher_ckpt!r}), '
            'generator=dict(latent_dim=16, hidden_channels=32))',
            'train_dataloader = dict(batch_size=16, dataset=dict(num_samples=32))',
            'val_dataloader = dict(dataset=dict(indices=64))',
            'test_dataloader = dict(dataset=dict(indices=64))',
            'train_cfg = dict(max_epochs=2, val_interval=2)',
            'default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=3), '
            'logger=dict(interval=1))', *lines]
    path = tmp_path / f'{name}.py'
    path.write_text('\n'.join(text) + '\n')
    return str(path)


@pytest.mark.slow
def test_train_resume_export_and_test_through_the_tools(tmp_path, digits_teacher):
    """tools/train.py on the demo config (2 epochs of 2 iterations, a random teacher); the same
    run cut after epoch 1 and resumed ends with the same student AND generator weights, bit
    for bit; the exported student tests as the distillation checkpoint does."""
    from mmkd.utils.checkpoint import safe_torch_load
    full = _config(tmp_path, digits_teacher, 'full')
    out = run_tool(['tools/train.py', full, '--work-dir', str(tmp_path / 'full')]).stdout
    for key in ('distill.logits.loss_kd', 'generator.loss_one_hot', 'generator.loss_activation',
                'generator.loss_information_entropy', 'accuracy/top1'):
        assert re.search(rf'{re.escape(key)}: -?[0-9.]+', out), key
    cut = _config(tmp_path, digits_teacher, 'cut', [
        "custom_imports = dict(imports=['mmkd', 'mmkd.distillers.data_free', "
        "'mmkd.distillers.optim', 'interrupt_hook'])",
        'custom_hooks = [dict(type="InterruptTrainingAt", epoch=1)]'])
    work = tmp_path / 'cut'
    first = run_tool(['tools/train.py', cut, '--work-dir', str(work)], check=False,
                     env=dict(PYTHONPATH=osp.join(REPO, 'tests')))
    assert first.returncode != 0 and (work / 'epoch_1.pth').exists()
    second = run_tool(['tools/train.py', full, '--work-dir', str(work), '--resume'])
    assert 'resumed epoch: 1' in second.stdout
    a = safe_torch_load(str(tmp_path / 'full' / 'epoch_2.pth'))['state_dict']
    b = safe_torch_load(str(work / 'epoch_2.pth'))['state_dict']
    assert set(a) == set(b)
    assert any(k.startswith('generator.') for k in a) and any(k.startswith('student.') for k in a)
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
    one = safe_torch_load(str(work / 'epoch_1.pth'))['state_dict']
    assert any(not torch.equal(one[k], a[k]) for k in a if k.startswith('generator.'))

    ckpt = str(tmp_path / 'full' / 'epoch_2.pth')
    acc = re.findall(r'accuracy/top1: ([0-9.]+)', run_tool(
        ['tools/test.py', full, ckpt, '--work-dir', str(tmp_path / 't1')]).stdout)[-1]
    exported = str(tmp_path / 'student.pth')
    run_tool(['tools/model_converters/extract_student.py', ckpt, exported])
    assert not any(k.startswith('generator') for k in safe_torch_load(exported)['state_dict'])
    plain = re.findall(r'accuracy/top1: ([0-9.]+)', run_tool(
        ['tools/test.py', DIGITS['student'], exported, '--work-dir', str(tmp_path / 't2'),
         '--cfg-options', 'test_dataloader.dataset.indices=64']).stdout)[-1]
    assert plain == acc


def test_resume_in_process_is_bit_exact(digits_teacher):
    """2 steps, the state saved (model incl. generator, both optimisers, the iteration), then 2
    more in a fresh distiller: equal to 4 straight steps, bit for bit (student AND generator).
    (The same through tools/train.py --resume: the slow test above.)"""
    from mmengine.logging import MessageHub
    hub = MessageHub.get_current_instance()
    old = hub.get_info('iter')

    def run(d, ow, its):
        d.train()
        for it in its:
            hub.update_info('iter', it)
            d.train_step(seeds(), ow)
    try:
        torch.manual_seed(0)
        straight = build(digits_teacher, **DFAD)
        ow = wrappers(straight)
        run(straight, ow, range(4))
        torch.manual_seed(0)
        first = build(digits_teacher, **DFAD)
        ow1 = wrappers(first)
        run(first, ow1, range(2))
        state, opt_state = copy.deepcopy(first.state_dict()), copy.deepcopy(ow1.state_dict())
        torch.manual_seed(99)  # a fresh process: other initial weights, then the checkpoint
        second = build(digits_teacher, **DFAD)
        second.load_state_dict(state)
        ow2 = wrappers(second)
        ow2.load_state_dict(opt_state)
        run(second, ow2, range(2, 4))
    finally:
        hub.update_info('iter', old)
    a, b = straight.state_dict(), second.state_dict()
    assert any(k.startswith('generator.') for k in a)
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
