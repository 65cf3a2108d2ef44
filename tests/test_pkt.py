"""PKT against the authors' formulation (loss and gradient, float64), a hand-checkable case,
maps (flatten / pool), degenerate inputs, and a build through the digits distiller.

The authors' formulation, read in megvii-research/mdistiller at commit
a08d46f10d6102bd6e3f258ca5ac880b020ea259, ``mdistiller/distillers/PKT.py`` (``pkt_loss``), the
same as HobbitLong/RepDistiller at b84f547c5db6a35318d4671d7d5c4de74c822403,
``distiller_zoo/PKT.py`` (``PKT.cosine_similarity_loss``), is written out below.
"""
import math

import pytest
import torch

from mmkd.methods.pkt import PKT, pkt_probabilities
from mmkd.registry import MODELS

from conftest import DIGITS, batch, build, digits_cfg, random_teacher_checkpoint

TOL = dict(rtol=1e-10, atol=1e-12)  # float64: the two differ by rounding only


def authors_pkt(f_s, f_t, eps=1e-7):
    """The authors' pkt_loss, written out: divide by (sqrt(sum f^2) + eps), zero NaNs, cosine
    similarities (x x^T + 1) / 2, rows normalised, mean of P_t log((P_t + eps) / (P_s + eps))."""
    def probs(f):
        f = f / (torch.sqrt(torch.sum(f ** 2, dim=1, keepdim=True)) + eps)
        f = torch.where(f != f, torch.zeros_like(f), f)
        k = (torch.mm(f, f.transpose(0, 1)) + 1.0) / 2.0
        return k / torch.sum(k, dim=1, keepdim=True)
    p_s, p_t = probs(f_s), probs(f_t)
    return torch.mean(p_t * torch.log((p_t + eps) / (p_s + eps)))


@pytest.mark.parametrize('n,ds,dt', [(8, 16, 32), (64, 128, 256), (5, 3, 3)])
def test_pkt_equals_the_authors_loss_and_gradient_in_float64(n, ds, dt):
    torch.manual_seed(n)
    # non-negative like pooled ReLU features, no all-zero row (that case is tested below)
    s = torch.randn(n, ds, dtype=torch.float64).abs().requires_grad_()
    t = torch.randn(n, dt, dtype=torch.float64).abs() * 3
    loss = PKT().level_loss(s, t, None)['loss_pkt']
    assert loss.dtype == torch.float64
    (grad, ) = torch.autograd.grad(loss, s)
    s2 = s.detach().clone().requires_grad_()
    ref = authors_pkt(s2, t)
    (ref_grad, ) = torch.autograd.grad(ref, s2)
    torch.testing.assert_close(loss, ref, **TOL)
    torch.testing.assert_close(grad, ref_grad, **TOL)
    assert loss.item() > 0 and grad.abs().sum() > 0


def test_pkt_by_hand():
    # Two samples. Teacher: orthogonal vectors -> K = [[1, 1/2], [1/2, 1]], P_t rows (2/3, 1/3).
    # Student: identical vectors -> K all 1, P_s rows (1/2, 1/2). Each row's KL is
    # 2/3 ln(4/3) + 1/3 ln(2/3); the loss is the mean of the 4 entries = (2 row KLs) / 4.
    t = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    s = torch.tensor([[1.0, 2.0, 2.0], [2.0, 4.0, 4.0]], dtype=torch.float64)
    p_t = pkt_probabilities(t)
    torch.testing.assert_close(p_t, torch.tensor([[2, 1], [1, 2]], dtype=torch.float64) / 3)
    row_kl = 2 / 3 * math.log(4 / 3) + 1 / 3 * math.log(2 / 3)
    loss = PKT(eps=1e-12).level_loss(s, t, None)['loss_pkt']
    assert loss.item() == pytest.approx(2 * row_kl / 4, rel=1e-9)
    # The same features on both sides: 0, whatever the scale.
    assert PKT().level_loss(5 * t, t, None)['loss_pkt'].item() == pytest.approx(0, abs=1e-12)


def test_maps_are_flattened_or_pooled_and_sizes_may_differ():
    torch.manual_seed(1)
    s = torch.randn(6, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    t = torch.randn(6, 8, 2, 2, dtype=torch.float64)
    flat = PKT().level_loss(s, t, None)['loss_pkt']
    torch.testing.assert_close(flat, authors_pkt(s.flatten(1), t.flatten(1)), **TOL)
    pooled = PKT(spatial='pool').level_loss(s, t, None)['loss_pkt']
    torch.testing.assert_close(pooled, authors_pkt(s.mean((2, 3)), t.mean((2, 3))), **TOL)
    assert flat.item() != pytest.approx(pooled.item())
    # (N, D) is used as given either way
    v, w = torch.randn(6, 5), torch.randn(6, 7)
    assert PKT(spatial='pool').level_loss(v, w, None)['loss_pkt'].item() == pytest.approx(
        PKT().level_loss(v, w, None)['loss_pkt'].item())
    # several levels: one term each, summed (LevelwiseMethod's default)
    m = PKT()
    m.build([v, v], [w, w])
    assert m([v, v], [w, w])['loss_pkt'].item() == pytest.approx(
        2 * m.level_loss(v, w, None)['loss_pkt'].item(), rel=1e-6)


def test_degenerate_inputs_stay_finite_and_bad_ones_fail_at_build():
    # A zero feature (a dead sample after ReLU): the authors' sqrt has a NaN gradient there;
    # ours stays finite and equals the authors' loss.
    s = torch.randn(4, 6, dtype=torch.float64)
    s[1] = 0
    s.requires_grad_()
    t = torch.randn(4, 6, dtype=torch.float64)
    loss = PKT().level_loss(s, t, None)['loss_pkt']
    loss.backward()
    assert torch.isfinite(s.grad).all()
    torch.testing.assert_close(loss, authors_pkt(s.detach(), t), **TOL)
    s2 = s.detach().clone().requires_grad_()
    authors_pkt(s2, t).backward()
    assert torch.isnan(s2.grad).any()  # the difference the docstring states
    # One sample: P = [[1]], loss 0. Half precision is computed in float32.
    one = PKT().level_loss(torch.randn(1, 3), torch.randn(1, 3), None)['loss_pkt']
    assert one.item() == 0.0
    half = PKT().level_loss(torch.randn(4, 3).half(), torch.randn(4, 3).half(), None)
    assert half['loss_pkt'].dtype == torch.float32
    # The teacher is detached.
    t = torch.randn(4, 6, requires_grad=True)
    PKT().level_loss(torch.randn(4, 6, requires_grad=True), t, None)['loss_pkt'].backward()
    assert t.grad is None
    with pytest.raises(ValueError, match='batch'):
        PKT().build(torch.randn(4, 3), torch.randn(5, 3))
    with pytest.raises(ValueError, match='features'):
        PKT().build(torch.randn(4), torch.randn(4))
    with pytest.raises(ValueError, match='eps'):
        PKT(eps=0.0)
    with pytest.raises(ValueError, match='spatial'):
        PKT(spatial='max')


def test_builds_and_trains_through_the_digits_distiller(tmp_path):
    assert MODELS.get('PKT') is PKT
    ckpt = random_teacher_checkpoint(DIGITS['teacher'], str(tmp_path / 'teacher.pth'))
    d = build(digits_cfg(ckpt, blocks=dict(
        feat=dict(student='neck', teacher='neck', method=dict(type='PKT'),
                  loss_weight=30000.0))))
    d.train()
    losses = d(*batch(n=8), mode='loss')
    assert 'distill.feat.loss_pkt' in losses and torch.isfinite(losses['distill.feat.loss_pkt'])
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    assert d.student.backbone.conv1.weight.grad.abs().sum() > 0
