"""FT (factor transfer) against the authors' formulation (paraphraser, translator, the
reconstruction and factor losses, their gradients, float64), and its paraphraser stage
through the digits distiller: the stage boundary, which term is on and which parameters move
on each side.

The authors' code read: HobbitLong/RepDistiller ``distiller_zoo/FT.py`` (``FactorTransfer``),
``models/util.py`` (``Paraphraser``, ``Translator``) and ``helper/pretrain.py`` (``init``: the
paraphraser trained with ``nn.MSELoss`` on the teacher's ``feat[-2]``) at b84f547;
open-mmlab/mmrazor ``mmrazor/models/losses/factor_transfer_loss.py`` (``FTLoss``) at 0fe347f
(the paper's flattened factor).
"""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.logging import MessageHub

import mmkd.methods.ft  # noqa: F401  (registers FT until mmkd.methods imports it)
from mmkd.methods.ft import FT

TOL = dict(rtol=1e-10, atol=1e-12)  # float64: the two formulations differ only by rounding


# ------------------------------------------------------------ the authors' formulation
class AuthorsParaphraser(nn.Module):
    """RepDistiller's Paraphraser(t_shape, k=0.5, use_bn=False), written out."""

    def __init__(self, t_shape, k=0.5, use_bn=False):
        super().__init__()
        c_in, c_out = t_shape[1], int(t_shape[1] * k)

        def bn(c):
            return nn.BatchNorm2d(c) if use_bn else nn.Sequential()
        self.encoder = nn.Sequential(
            nn.Conv2d(c_in, c_in, 3, 1, 1), bn(c_in), nn.LeakyReLU(0.1, inplace=True),
            nn.Conv2d(c_in, c_out, 3, 1, 1), bn(c_out), nn.LeakyReLU(0.1, inplace=True),
            nn.Conv2d(c_out, c_out, 3, 1, 1), bn(c_out), nn.LeakyReLU(0.1, inplace=True))
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(c_out, c_out, 3, 1, 1), bn(c_out), nn.LeakyReLU(0.1, inplace=True),
            nn.ConvTranspose2d(c_out, c_in, 3, 1, 1), bn(c_in), nn.LeakyReLU(0.1, inplace=True),
            nn.ConvTranspose2d(c_in, c_in, 3, 1, 1), bn(c_in), nn.LeakyReLU(0.1, inplace=True))

    def forward(self, f_s, is_factor=False):
        factor = self.encoder(f_s)
        if is_factor:
            return factor
        return factor, self.decoder(factor)


class AuthorsTranslator(nn.Module):
    """RepDistiller's Translator(s_shape, t_shape, k=0.5, use_bn=True), written out."""

    def __init__(self, s_shape, t_shape, k=0.5, use_bn=True):
        super().__init__()
        c_in, c_out = s_shape[1], int(t_shape[1] * k)

        def bn(c):
            return nn.BatchNorm2d(c) if use_bn else nn.Sequential()
        self.encoder = nn.Sequential(
            nn.Conv2d(c_in, c_in, 3, 1, 1), bn(c_in), nn.LeakyReLU(0.1, inplace=True),
            nn.Conv2d(c_in, c_out, 3, 1, 1), bn(c_out), nn.LeakyReLU(0.1, inplace=True),
            nn.Conv2d(c_out, c_out, 3, 1, 1), bn(c_out), nn.LeakyReLU(0.1, inplace=True))

    def forward(self, f_s):
        return self.encoder(f_s)


def authors_factor_transfer(f_s, f_t, p1=2, p2=1):
    """RepDistiller's FactorTransfer.factor_loss: the larger map pooled to the other's
    (square) size, factor = normalize(f^p1 mean over channels), mean |diff| (p2 = 1)."""
    s_h, t_h = f_s.shape[2], f_t.shape[2]
    if s_h > t_h:
        f_s = F.adaptive_avg_pool2d(f_s, (t_h, t_h))
    elif s_h < t_h:
        f_t = F.adaptive_avg_pool2d(f_t, (s_h, s_h))

    def factor(f):
        return F.normalize(f.pow(p1).mean(1).view(f.size(0), -1))
    if p2 == 1:
        return (factor(f_s) - factor(f_t)).abs().mean()
    return (factor(f_s) - factor(f_t)).pow(p2).mean()


def mmrazor_ft_loss(s_feature, t_feature):
    """MMRazor's FTLoss (loss_weight 1): nn.L1Loss of F.normalize(x.view(N, -1))."""
    def factor(x):
        return F.normalize(x.view(x.size(0), -1))
    return nn.L1Loss()(factor(s_feature), factor(t_feature))


def _at(stage_iter):
    MessageHub.get_current_instance().update_info('iter', stage_iter)


# ------------------------------------------------------------ fidelity
def test_ft_modules_are_the_authors_and_reconstruction_matches_in_float64():
    torch.manual_seed(0)
    s = torch.randn(4, 6, 8, 8, dtype=torch.float64)
    t = torch.randn(4, 8, 4, 4, dtype=torch.float64)
    ours = FT(paraphraser_stage=1, by_epoch=False)
    ours.build(s, t)
    ours.double()
    para = AuthorsParaphraser(t.shape).double()
    trans = AuthorsTranslator(s.shape, t.shape).double()
    # identical module layout: the authors' modules load ours strictly (same keys, shapes)
    para.load_state_dict(ours.paraphraser.state_dict(), strict=True)
    trans.load_state_dict(ours.translator.state_dict(), strict=True)
    try:
        _at(0)  # t = 1: the paraphraser stage
        out = ours(s, t)
        assert float(out['ft_stage']) == 1 and float(out['loss_ft_factor']) == 0
        grads = torch.autograd.grad(out['loss_ft_reconstruction'],
                                    list(ours.paraphraser.parameters()))
        _, rec = para(t)
        ref = nn.MSELoss()(rec, t)  # helper/pretrain.py: criterion(f_t_rec, f_t)
        ref_grads = torch.autograd.grad(ref, list(para.parameters()))
        torch.testing.assert_close(out['loss_ft_reconstruction'], ref, **TOL)
        for g, r in zip(grads, ref_grads):
            torch.testing.assert_close(g, r, **TOL)
    finally:
        _at(0)


@pytest.mark.parametrize('p1,p2', [(2.0, 1.0), (2.0, 2.0), (1.0, 1.0)])
@pytest.mark.parametrize('sizes', [(8, 4), (4, 8), (4, 4)])
def test_ft_factor_loss_and_gradient_equal_the_authors_in_float64(p1, p2, sizes):
    torch.manual_seed(1)
    hs, ht = sizes
    s = torch.randn(4, 6, hs, hs, dtype=torch.float64, requires_grad=True)
    t = torch.randn(4, 8, ht, ht, dtype=torch.float64)
    ours = FT(paraphraser_stage=0, by_epoch=False, p1=p1, p2=p2, factor_weight=1.0)
    ours.build(s, t)
    ours.double()
    para = AuthorsParaphraser(t.shape).double()
    trans = AuthorsTranslator(s.shape, t.shape).double()
    para.load_state_dict(ours.paraphraser.state_dict())
    trans.load_state_dict(ours.translator.state_dict())
    para.eval()  # train_distill: module_list[2].eval()
    out = ours(s, t)  # stage 2 from the start
    assert float(out['ft_stage']) == 2 and float(out['loss_ft_reconstruction']) == 0
    g = torch.autograd.grad(out['loss_ft_factor'], s)[0]
    s2 = s.detach().clone().requires_grad_(True)
    ref = authors_factor_transfer(trans(s2), para(t, is_factor=True), p1, p2)
    r = torch.autograd.grad(ref, s2)[0]
    torch.testing.assert_close(out['loss_ft_factor'], ref, **TOL)
    torch.testing.assert_close(g, r, **TOL)
    # the paraphraser is frozen in stage 2: no gradient reaches it
    assert all(p.grad is None for p in ours.paraphraser.parameters())


def test_ft_flatten_factor_equals_mmrazor_and_bad_inputs_fail():
    torch.manual_seed(2)
    s = torch.randn(3, 8, 4, 4, dtype=torch.float64, requires_grad=True)
    f_t = torch.randn(3, 8, 4, 4, dtype=torch.float64)
    from mmkd.methods.ft import factor_transfer_loss
    ours = factor_transfer_loss(s, f_t, factor='flatten')
    ref = mmrazor_ft_loss(s, f_t)
    torch.testing.assert_close(ours, ref, **TOL)
    torch.testing.assert_close(torch.autograd.grad(ours, s)[0],
                               torch.autograd.grad(mmrazor_ft_loss(s, f_t), s)[0], **TOL)
    with pytest.raises(ValueError, match=r'\(N, C, H, W\)'):
        FT().build(torch.randn(2, 4), torch.randn(2, 4, 2, 2))
    with pytest.raises(ValueError, match='rate'):
        FT(rate=0.0)


# ------------------------------------------------------------ the stage boundary
def test_ft_paraphraser_stage_boundary_through_the_digits_distiller(teacher_ckpts):
    """paraphraser_stage=2 (iterations): iterations 1-2 train the paraphraser alone on the
    reconstruction (no FT gradient to the translator or the student), iterations 3-4 turn
    the factor loss on with the paraphraser frozen (it no longer moves)."""
    from conftest import batch, build, digits_cfg
    torch.manual_seed(0)
    model = build(digits_cfg(teacher_ckpts['digits'], blocks=dict(ft=dict(
        student='backbone.layer4', teacher='backbone.layer4',
        method=dict(type='FT', paraphraser_stage=2, by_epoch=False), loss_weight=1.0))))
    model.train()
    method = model.methods['ft']
    para, trans = list(method.paraphraser.parameters()), list(method.translator.parameters())
    student = list(model.student.backbone.parameters())
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    inputs, samples = batch(n=8, size=16)
    try:
        for it in range(4):
            _at(it)
            losses = model(inputs, samples, mode='loss')
            stage1 = it < 2
            assert float(losses['distill.ft.ft_stage']) == (1 if stage1 else 2)
            rec = losses['distill.ft.loss_ft_reconstruction']
            fac = losses['distill.ft.loss_ft_factor']
            assert (float(rec.detach()) > 0, float(fac.detach()) > 0) == (stage1, not stage1)
            active = rec if stage1 else fac
            g = torch.autograd.grad(active, para + trans + student, retain_graph=True,
                                    allow_unused=True)
            nonzero = [x is not None and x.abs().sum() > 0 for x in g]
            n_p, n_t = len(para), len(trans)
            assert any(nonzero[:n_p]) == stage1, it  # paraphraser: stage 1 only
            assert any(nonzero[n_p:n_p + n_t]) == (not stage1), it  # translator: stage 2
            assert any(nonzero[n_p + n_t:]) == (not stage1), it  # student: FT grad in stage 2
            before = [p.detach().clone() for p in para + trans]
            loss, _ = model.parse_losses(losses)
            opt.zero_grad()
            loss.backward()
            opt.step()
            moved = [not torch.equal(b, p) for b, p in zip(before, para + trans)]
            assert any(moved[:n_p]) == stage1, it
            assert any(moved[n_p:]) == (not stage1), it
    finally:
        _at(0)


def test_ft_stage_follows_the_runner_counter_by_epoch_or_iteration():
    """t is 1-based as in the loss-weight schedules: with paraphraser_stage=2 the paraphraser
    trains during t = 1, 2 and the factor loss starts at t = 3; outside a Runner t = 1."""
    hub = MessageHub.get_current_instance()
    by_epoch, by_iter = FT(paraphraser_stage=2, by_epoch=True), FT(paraphraser_stage=2,
                                                                   by_epoch=False)
    try:
        stages = []
        for count in range(4):
            hub.update_info('epoch', count)
            hub.update_info('iter', 10 * count)
            stages.append((by_epoch.stage(), by_iter.stage()))
        assert stages == [(1, 1), (1, 2), (2, 2), (2, 2)]
        assert FT(paraphraser_stage=0).stage() == 2
    finally:
        hub.update_info('epoch', 0)
        hub.update_info('iter', 0)
