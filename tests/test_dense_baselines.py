"""CWD, PKD, AT and FitNet's ConvReg against their formulas, their reference code's formulation
(MMRazor, mdistiller, written out here), hand-computed cases and degenerate maps."""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmkd.methods import AT, CWD, PKD, ConvReg, FeatureMSE, channel_standardize


def run(method, student, teacher):
    method.build(student, teacher)
    return method(student, teacher)


# ------------------------------------------------------------------------------------ CWD
def mmrazor_cwd(s, t, tau):
    n, c, h, w = s.shape
    pt = F.softmax(t.reshape(-1, h * w) / tau, dim=1)
    loss = torch.sum(pt * F.log_softmax(t.reshape(-1, h * w) / tau, dim=1)
                     - pt * F.log_softmax(s.reshape(-1, h * w) / tau, dim=1)) * tau ** 2
    return loss / (c * n)


@pytest.mark.parametrize('tau', [1.0, 4.0])
def test_cwd_equals_mmrazor_and_a_hand_case(tau):
    torch.manual_seed(0)
    s, t = torch.randn(2, 3, 5, 4), torch.randn(2, 3, 5, 4) * 2
    assert run(CWD(tau=tau), s, t)['loss_cwd'].item() == pytest.approx(
        mmrazor_cwd(s, t, tau).item(), rel=1e-5)
    # one channel over two positions: teacher (ln 3, 0) -> (3/4, 1/4), student uniform:
    # KL = 3/4 ln(3/2) + 1/4 ln(1/2)
    t = torch.tensor([math.log(3), 0.0]).view(1, 1, 1, 2)
    got = run(CWD(tau=1.0), torch.zeros(1, 1, 1, 2), t)['loss_cwd'].item()
    assert got == pytest.approx(0.75 * math.log(1.5) + 0.25 * math.log(0.5), rel=1e-6)


def test_cwd_shift_invariance_levels_projector_and_degenerate_maps():
    torch.manual_seed(1)
    s, t = torch.randn(2, 4, 6, 6), torch.randn(2, 4, 6, 6)
    base = run(CWD(), s, t)['loss_cwd']
    # a constant added to a whole channel does not change its spatial distribution
    assert run(CWD(), s + torch.randn(2, 4, 1, 1), t)['loss_cwd'].item() == pytest.approx(
        base.item(), rel=1e-5)
    # several levels (FPN): one term each, summed
    two = run(CWD(), (s, s[:, :, :3, :3]), (t, t[:, :, :3, :3]))['loss_cwd']
    assert two.item() == pytest.approx(
        base.item() + mmrazor_cwd(s[:, :, :3, :3], t[:, :, :3, :3], 1.0).item(), rel=1e-5)
    # other widths: a 1x1 conv from the dry run; a smaller student map is resized
    cwd = CWD()
    out = run(cwd, torch.randn(2, 3, 3, 3, requires_grad=True), t)['loss_cwd']
    assert isinstance(cwd.connectors[0], nn.Conv2d) and torch.isfinite(out)
    with pytest.raises(ValueError, match="projector='none'"):
        CWD(projector='none').build(torch.randn(1, 3, 2, 2), torch.randn(1, 4, 2, 2))
    with pytest.raises(ValueError, match='dense maps'):
        CWD().build(torch.randn(2, 4), torch.randn(2, 4))
    # a constant channel is a uniform distribution; empty batches give 0
    flat = run(CWD(), torch.zeros(1, 2, 3, 3), torch.zeros(1, 2, 3, 3))['loss_cwd']
    assert flat.item() == pytest.approx(0.0, abs=1e-7)
    empty = torch.zeros(0, 2, 3, 3, requires_grad=True)
    assert run(CWD(), empty, torch.zeros(0, 2, 3, 3))['loss_cwd'].item() == 0.0


# ------------------------------------------------------------------------------------ PKD
def mmrazor_pkd(s, t):
    def norm(f):
        n, c, h, w = f.shape
        f = f.permute(1, 0, 2, 3).reshape(c, -1)
        f = (f - f.mean(-1, keepdim=True)) / (f.std(-1, keepdim=True) + 1e-6)
        return f.reshape(c, n, h, w).permute(1, 0, 2, 3)
    return F.mse_loss(norm(s), norm(t)) / 2


def test_pkd_equals_mmrazor_and_one_minus_pearson():
    torch.manual_seed(2)
    s, t = torch.randn(3, 5, 4, 4), torch.randn(3, 5, 4, 4) * 7 + 3
    got = run(PKD(), s, t)['loss_pkd'].item()
    assert got == pytest.approx(mmrazor_pkd(s, t).item(), rel=1e-5)
    # the second formulation: (M - 1) / M * mean over channels of (1 - Pearson r)
    rows_s = s.transpose(0, 1).flatten(1)
    rows_t = t.transpose(0, 1).flatten(1)
    r = torch.stack([torch.corrcoef(torch.stack([a, b]))[0, 1] for a, b in zip(rows_s, rows_t)])
    m = rows_s.shape[1]
    assert got == pytest.approx(((m - 1) / m * (1 - r)).mean().item(), rel=1e-4)
    # magnitude-free: any per-channel a * x + b (a > 0) of the student, same loss
    moved = s * torch.rand(1, 5, 1, 1).add(0.5) * 10 + torch.randn(1, 5, 1, 1)
    assert run(PKD(), moved, t)['loss_pkd'].item() == pytest.approx(got, rel=1e-4)
    # identical maps: 0; opposite maps: (M - 1) / M * 2
    assert run(PKD(), t, t)['loss_pkd'].item() == pytest.approx(0.0, abs=1e-6)
    assert run(PKD(), -t, t)['loss_pkd'].item() == pytest.approx(2 * (m - 1) / m, rel=1e-4)


def test_pkd_degenerate_maps_stay_finite():
    s = torch.randn(2, 3, 4, 4, requires_grad=True)
    out = run(PKD(), s, torch.full((2, 3, 4, 4), 5.0))['loss_pkd']  # constant teacher channels
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(s.grad).all()
    one = torch.randn(1, 3, 1, 1, requires_grad=True)  # one value per channel: z = 0
    assert torch.equal(channel_standardize(one), torch.zeros(1, 3, 1, 1))
    assert run(PKD(), one, torch.randn(1, 3, 1, 1))['loss_pkd'].item() == 0.0
    assert run(PKD(), torch.zeros(0, 3, 2, 2), torch.zeros(0, 3, 2, 2))['loss_pkd'].item() == 0.0


# ------------------------------------------------------------------------------------- AT
def mdistiller_at(f_s, f_t, p=2):
    def at(f):
        return F.normalize(f.pow(p).mean(1).reshape(f.size(0), -1))
    if f_s.shape[2] > f_t.shape[2]:
        f_s = F.adaptive_avg_pool2d(f_s, f_t.shape[2:])
    elif f_s.shape[2] < f_t.shape[2]:
        f_t = F.adaptive_avg_pool2d(f_t, f_s.shape[2:])
    return (at(f_s) - at(f_t)).pow(2).mean()


def test_at_by_hand_and_against_mdistiller_over_stages():
    # student attention (1, 0, 0, 0), teacher (1/2, 1/2, 1/2, 1/2): every squared difference
    # is 1/4, so the mean is 1/4
    s = torch.tensor([[1.0, 0.0], [0.0, 0.0]]).view(1, 1, 2, 2)
    assert run(AT(), s, torch.ones(1, 3, 2, 2))['loss_at'].item() == pytest.approx(0.25)
    torch.manual_seed(3)
    g_s = [torch.randn(2, 4, 8, 8), torch.randn(2, 8, 4, 4), torch.randn(2, 16, 2, 2)]
    g_t = [torch.randn(2, 16, 8, 8), torch.randn(2, 32, 8, 8), torch.randn(2, 64, 1, 1)]
    want = sum(mdistiller_at(a, b) for a, b in zip(g_s, g_t))  # other widths, other sizes
    assert run(AT(), g_s, g_t)['loss_at'].item() == pytest.approx(want.item(), rel=1e-5)
    # the attention is scale-free: a whole map times a constant, the same loss
    assert run(AT(), [3 * x for x in g_s], g_t)['loss_at'].item() == pytest.approx(
        want.item(), rel=1e-5)
    with pytest.raises(ValueError, match='feature maps'):
        AT().build(torch.randn(2, 4), torch.randn(2, 4))
    assert run(AT(), torch.zeros(0, 2, 2, 2), torch.zeros(0, 2, 2, 2))['loss_at'].item() == 0.0


# ------------------------------------------------------------------------------- FitNet
@pytest.mark.parametrize('hs, ht, kind', [(8, 4, nn.Conv2d), (4, 8, nn.ConvTranspose2d),
                                          (6, 4, nn.Conv2d), (4, 4, nn.Conv2d)])
def test_convreg_maps_student_onto_teacher(hs, ht, kind):
    reg = ConvReg((2, 16, hs, hs), (2, 32, ht, ht))
    assert isinstance(reg[0], kind) and isinstance(reg[1], nn.BatchNorm2d)
    assert isinstance(reg[2], nn.ReLU)
    assert reg(torch.randn(2, 16, hs, hs)).shape == (2, 32, ht, ht)


def test_fitnet_convreg_loss_is_mse_of_the_regressed_hint():
    torch.manual_seed(4)
    s, t = torch.randn(4, 8, 8, 8), torch.randn(4, 16, 4, 4)
    fit = FeatureMSE(projector='convreg')
    loss = run(fit, s, t)['loss_mse']
    reg = fit.connectors[0]
    assert isinstance(reg, ConvReg) and reg[0].stride == (2, 2)
    assert loss.item() == pytest.approx(F.mse_loss(reg(s), t).item(), rel=1e-6)
    with pytest.raises(ValueError, match='no regressor from a 3x3 student map to a 8x8'):
        FeatureMSE(projector='convreg').build(torch.randn(1, 8, 3, 3), torch.randn(1, 8, 8, 8))
    with pytest.raises(ValueError, match=r"projector must be one of \['auto', 'always', 'none', "):
        FeatureMSE(projector='conv')
