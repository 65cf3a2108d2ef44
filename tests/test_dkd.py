"""DKD, RLD and logit standardisation against their formulas, the authors' formulations and
hand-computed cases; degenerate class counts."""
import math

import pytest
import torch
import torch.nn.functional as F
from mmpretrain.structures import DataSample

from mmkd.losses import standardize_logits
from mmkd.methods import DKD, RLD, LogitKD, decoupled_kl


def samples(labels):
    return [DataSample().set_gt_label(int(y)) for y in labels]


def kd_per_sample(s, t, tau):
    return (F.softmax(t / tau, 1) * (F.log_softmax(t / tau, 1) - F.log_softmax(s / tau, 1))).sum(1)


def authors_dkd(s, t, y, alpha, beta, tau):
    """mdistiller's dkd_loss, written out: binary KL via summed masked probabilities, NCKD
    via logits pushed down by 1000 at the target, KL summed and divided by N."""
    gt = F.one_hot(y, s.shape[1]).bool()
    ps, pt = F.softmax(s / tau, 1), F.softmax(t / tau, 1)
    bs = torch.stack([(ps * gt).sum(1), (ps * ~gt).sum(1)], 1)
    bt = torch.stack([(pt * gt).sum(1), (pt * ~gt).sum(1)], 1)
    tckd = F.kl_div(torch.log(bs), bt, reduction='sum') * tau ** 2 / y.shape[0]
    pt2 = F.softmax(t / tau - 1000.0 * gt, 1)
    ls2 = F.log_softmax(s / tau - 1000.0 * gt, 1)
    nckd = F.kl_div(ls2, pt2, reduction='sum') * tau ** 2 / y.shape[0]
    return alpha * tckd + beta * nckd


@pytest.mark.parametrize('tau', [1.0, 4.0])
def test_kd_is_tckd_plus_teacher_weighted_nckd(tau):
    torch.manual_seed(0)
    s, t = torch.randn(16, 7) * 2, torch.randn(16, 7) * 3
    y = torch.randint(0, 7, (16, ))
    tckd, nckd, rest = decoupled_kl(s, t, y, tau)
    assert torch.allclose(tckd + rest * nckd, kd_per_sample(s, t, tau), atol=1e-5)
    assert torch.allclose(rest, 1 - F.softmax(t / tau, 1).gather(1, y[:, None]).squeeze(1))


def test_dkd_equals_the_authors_formulation_and_a_hand_case():
    torch.manual_seed(1)
    s, t = torch.randn(8, 10), torch.randn(8, 10) * 2
    y = torch.randint(0, 10, (8, ))
    out = DKD(alpha=1.0, beta=8.0, tau=4.0)(s, t, samples(y))
    assert set(out) == {'loss_tckd', 'loss_nckd'}
    assert torch.allclose(sum(out.values()), authors_dkd(s, t, y, 1.0, 8.0, 4.0), atol=1e-5)
    # By hand, tau 1: teacher (ln 2, 0, 0) -> p = (1/2, 1/4, 1/4); student uniform (1/3 each).
    # TCKD = KL((1/2, 1/2) || (1/3, 2/3)) = 1/2 ln(3/2) + 1/2 ln(3/4) = 1/2 ln(9/8);
    # NCKD = KL((1/2, 1/2) || (1/2, 1/2)) = 0.
    teacher = torch.tensor([[math.log(2), 0., 0.]])
    out = DKD(alpha=2.0, beta=8.0, tau=1.0)(torch.zeros(1, 3), teacher, samples([0]))
    assert out['loss_tckd'].item() == pytest.approx(2 * 0.5 * math.log(9 / 8), abs=1e-6)
    assert out['loss_nckd'].item() == pytest.approx(0.0, abs=1e-7)
    # identical logits: both parts are 0
    same = DKD(tau=4.0)(t, t, samples(y))
    assert max(v.abs().item() for v in same.values()) < 1e-5


def test_dkd_gradient_matches_the_authors_and_degenerate_class_counts_stay_finite():
    torch.manual_seed(2)
    s = torch.randn(4, 5, requires_grad=True)
    t, y = torch.randn(4, 5), torch.tensor([0, 4, 2, 2])
    sum(DKD(alpha=1.0, beta=2.0, tau=2.0)(s, t, samples(y)).values()).backward()
    s2 = s.detach().clone().requires_grad_()
    authors_dkd(s2, t, y, 1.0, 2.0, 2.0).backward()
    assert torch.allclose(s.grad, s2.grad, atol=1e-5)
    for c in (1, 2):
        s = torch.randn(3, c, requires_grad=True)
        y = torch.zeros(3, dtype=torch.long)
        for method in (DKD(), RLD()):
            out = method(s, torch.randn(3, c) * 5, samples(y))
            total = sum(out.values())
            total.backward()
            assert torch.isfinite(total) and torch.isfinite(s.grad).all(), (c, out)
            if c == 1:
                assert total.item() == 0.0
        if c == 2:  # one non-target class: NCKD is 0, TCKD is all of KD
            t = torch.randn(3, 2)
            out = DKD(alpha=1.0, tau=1.0)(s, t, samples(y))
            assert out['loss_nckd'].item() == pytest.approx(0.0, abs=1e-7)
            kd = kd_per_sample(s, t, 1.0).mean().item()
            assert out['loss_tckd'].item() == pytest.approx(kd, abs=1e-6)


def test_rld_reduces_to_dkd_when_the_teacher_is_right():
    torch.manual_seed(3)
    s, t = torch.randn(12, 6), torch.randn(12, 6)
    y = t.argmax(1)  # the teacher is right on every sample
    rld = RLD(alpha=1.5, beta=8.0, tau=4.0)  # scd_tau None = tau (the authors' --same-t)
    dkd = DKD(alpha=1.5, beta=8.0, tau=4.0)
    r, d = rld(s, t, samples(y)), dkd(s, t, samples(y))
    assert r['loss_scd'].item() == pytest.approx(d['loss_tckd'].item(), rel=1e-5)
    assert r['loss_mcd'].item() == pytest.approx(d['loss_nckd'].item(), rel=1e-5)
    # Another SCD temperature (the authors' code default 1.0) is no longer DKD.
    assert RLD(tau=4.0, scd_tau=1.0)(s, t, samples(y))['loss_scd'].item() != pytest.approx(
        d['loss_tckd'].item(), rel=1e-3)


def test_rld_refines_a_wrong_teacher_by_hand():
    # Label 0; the teacher ranks class 1 first and class 2 above the label: SCD compares the
    # student's p(label) with the teacher's p(its top class); MCD keeps only class 3.
    t = torch.tensor([[1.0, 3.0, 2.0, 0.0]])
    s = torch.zeros(1, 4)
    out = RLD(alpha=1.0, beta=1.0, tau=1.0)(s, t, samples([0]))
    p_top = F.softmax(t, 1)[0, 1].item()
    scd = p_top * math.log(p_top / 0.25) + (1 - p_top) * math.log((1 - p_top) / 0.75)
    assert out['loss_scd'].item() == pytest.approx(scd, rel=1e-5)
    assert out['loss_mcd'].item() == pytest.approx(0.0, abs=1e-7)  # one class left
    # With classes 3 and 4 left, MCD is the KL of their renormalised softmaxes.
    t = torch.tensor([[1.0, 3.0, 2.0, 0.0, -1.0]])
    s = torch.tensor([[0.0, 0.0, 0.0, 1.0, 1.0]], requires_grad=True)
    out = RLD(alpha=1.0, beta=1.0, tau=1.0)(s, t, samples([0]))
    p = F.softmax(torch.tensor([0.0, -1.0]), 0)
    assert out['loss_mcd'].item() == pytest.approx(
        (p * (p.log() - math.log(0.5))).sum().item(), rel=1e-5)
    out['loss_mcd'].backward()
    assert s.grad[0, :3].abs().max() == 0 and s.grad[0, 3:].abs().sum() > 0
    # The teacher ranks the label last: every class is removed, MCD 0, finite gradient.
    s = torch.randn(1, 3, requires_grad=True)
    out = RLD()(s, torch.tensor([[-5.0, 1.0, 2.0]]), samples([0]))
    assert out['loss_mcd'].item() == 0.0
    sum(out.values()).backward()
    assert torch.isfinite(s.grad).all()


def test_logit_standardisation_formula_invariance_and_degenerate_inputs():
    z = torch.tensor([[1.0, 2.0, 3.0]])  # mean 2, unbiased std 1
    assert torch.allclose(standardize_logits(z), torch.tensor([[-1.0, 0.0, 1.0]]) / (1 + 1e-7))
    torch.manual_seed(4)
    x = torch.randn(5, 9)
    ref = (x - x.mean(-1, keepdim=True)) / (1e-7 + x.std(-1, keepdim=True))  # the authors'
    assert torch.allclose(standardize_logits(x), ref)
    assert torch.equal(standardize_logits(torch.full((2, 4), 3.0)), torch.zeros(2, 4))
    assert torch.equal(standardize_logits(torch.tensor([[7.0]])), torch.zeros(1, 1))
    # The point of the method: KD no longer asks the student to match the teacher's logit
    # range, only its shape: any per-sample a * z + b (a > 0) of the student gives the same loss.
    s, t = torch.randn(6, 9), torch.randn(6, 9) * 4
    ls = LogitKD(tau=2.0, logit_standardization=True)
    base = ls.level_loss(s, t, None)['loss_kd']
    moved = ls.level_loss(3.0 * s + torch.randn(6, 1), t, None)['loss_kd']
    assert moved.item() == pytest.approx(base.item(), rel=1e-4)
    assert LogitKD(tau=2.0).level_loss(3.0 * s, t, None)['loss_kd'].item() != pytest.approx(
        LogitKD(tau=2.0).level_loss(s, t, None)['loss_kd'].item(), rel=1e-2)
    # and it is the authors' kd_loss on standardised logits
    zs, zt = standardize_logits(s), standardize_logits(t)
    assert base.item() == pytest.approx(4 * kd_per_sample(zs, zt, 2.0).mean().item(), rel=1e-5)
    # DKD with it: the authors' dkd_loss on standardised logits
    y = torch.randint(0, 9, (6, ))
    out = DKD(tau=2.0, logit_standardization=True)(s, t, samples(y))
    assert sum(out.values()).item() == pytest.approx(
        authors_dkd(zs, zt, y, 1.0, 8.0, 2.0).item(), rel=1e-5)


def test_decoupled_methods_refuse_bad_inputs():
    s, t = torch.randn(2, 4), torch.randn(2, 4)
    with pytest.raises(ValueError, match='DKD needs the ground-truth labels'):
        DKD()(s, t, None)
    with pytest.raises(ValueError, match=r'labels \[0, 4\] outside the 4 classes'):
        RLD()(s, t, samples([0, 4]))
    with pytest.raises(ValueError, match='same number of classes'):
        DKD().build(torch.randn(2, 4), torch.randn(2, 5))
    with pytest.raises(ValueError, match=r'logits \(N, C\)'):
        RLD().build(torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3))
    with pytest.raises(ValueError, match='tau must be positive'):
        DKD(tau=0)
    with pytest.raises(ValueError, match='scd_tau must be positive'):
        RLD(scd_tau=-1.0)
