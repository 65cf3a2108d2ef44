"""RKD against the authors' formulation (loss and gradient, float64), hand-checkable cases,
feature-map pooling, degenerate batches and a build through the digits distiller.

The authors' code read: megvii-research/mdistiller ``mdistiller/distillers/RKD.py`` (``_pdist``,
``rkd_loss``) at a08d46f10d6102bd6e3f258ca5ac880b020ea259, and lenscloth/RKD ``metric/loss.py``
(``RkdDistance``, ``RKdAngle``) with ``metric/utils.py`` (``pdist``) at
0a6c3c0c190722d428322bf71703c0ae86c25242 (the same formulas).
"""
import math

import pytest
import torch
import torch.nn.functional as F

from mmkd.methods.rkd import RKD, pairwise_distances

TOL = dict(rtol=1e-10, atol=1e-12)  # float64: the two formulations differ only by rounding


def authors_pdist(e, squared, eps):
    """The authors' pdist: Gram-matrix squared distances clamped at eps, sqrt, diagonal set
    to 0 by index assignment on a clone."""
    e_square = e.pow(2).sum(dim=1)
    res = (e_square.unsqueeze(1) + e_square.unsqueeze(0) - 2 * e @ e.t()).clamp(min=eps)
    if not squared:
        res = res.sqrt()
    res = res.clone()
    res[range(len(e)), range(len(e))] = 0
    return res


def authors_rkd(f_s, f_t, squared=False, eps=1e-12, distance_weight=25, angle_weight=50):
    """mdistiller's rkd_loss, written out: both inputs viewed as (N, -1); the teacher's side
    under no_grad; each distance matrix divided by the mean of its positive entries; smooth
    L1 (mean) on the distances and on the flattened (N, N, N) cosines of normalised
    difference vectors."""
    stu, tea = f_s.view(f_s.shape[0], -1), f_t.view(f_t.shape[0], -1)
    with torch.no_grad():
        t_d = authors_pdist(tea, squared, eps)
        t_d = t_d / t_d[t_d > 0].mean()
    d = authors_pdist(stu, squared, eps)
    d = d / d[d > 0].mean()
    loss_d = F.smooth_l1_loss(d, t_d)
    with torch.no_grad():
        td = F.normalize(tea.unsqueeze(0) - tea.unsqueeze(1), p=2, dim=2)
        t_angle = torch.bmm(td, td.transpose(1, 2)).view(-1)
    sd = F.normalize(stu.unsqueeze(0) - stu.unsqueeze(1), p=2, dim=2)
    s_angle = torch.bmm(sd, sd.transpose(1, 2)).view(-1)
    loss_a = F.smooth_l1_loss(s_angle, t_angle)
    return distance_weight * loss_d + angle_weight * loss_a


def built(method, s, t):
    """The method's losses as the distiller computes them (built by the dry run, then
    called)."""
    method.build(s, t)
    return method(s, t)


def total(out):
    return out['loss_rkd_distance'] + out['loss_rkd_angle']


@pytest.mark.parametrize('squared', [False, True])
@pytest.mark.parametrize('weights', [(25.0, 50.0), (1.0, 2.0)])
def test_rkd_equals_the_authors_loss_and_gradient(squared, weights):
    torch.manual_seed(0)
    # different widths (no connector) and a scale that puts some differences above the
    # smooth-L1 threshold 1 (normalised distances spread) and some below
    s = (torch.randn(12, 16, dtype=torch.float64) * 3).requires_grad_()
    t = torch.randn(12, 40, dtype=torch.float64)
    method = RKD(distance_weight=weights[0], angle_weight=weights[1], squared=squared)
    out = built(method, s, t)
    assert set(out) == {'loss_rkd_distance', 'loss_rkd_angle'}
    assert out['loss_rkd_distance'].dtype == torch.float64
    s2 = s.detach().clone().requires_grad_()
    ref = authors_rkd(s2, t, squared, 1e-12, *weights)
    torch.testing.assert_close(total(out), ref, **TOL)
    total(out).backward()
    ref.backward()
    torch.testing.assert_close(s.grad, s2.grad, **TOL)


def test_rkd_pools_feature_maps_as_mdistiller_feeds_pooled_feat():
    torch.manual_seed(1)
    s = torch.randn(6, 8, 4, 4, dtype=torch.float64, requires_grad=True)
    t = torch.randn(6, 32, 2, 2, dtype=torch.float64)
    out = total(built(RKD(), s, t))
    s2 = s.detach().clone().requires_grad_()
    # mdistiller's pooled_feat: the last stage average-pooled and flattened
    ref = authors_rkd(F.adaptive_avg_pool2d(s2, 1).flatten(1), t.mean(dim=(2, 3)))
    torch.testing.assert_close(out, ref, **TOL)
    out.backward()
    ref.backward()
    torch.testing.assert_close(s.grad, s2.grad, **TOL)
    # several levels (a tuple, e.g. 'neck' of mmpretrain): one term each, summed
    levels = built(RKD(), (s.detach(), s.detach()), (t, t))
    torch.testing.assert_close(total(levels), 2 * out.detach(), **TOL)


def test_rkd_by_hand():
    # Student: a right isosceles triangle (0,0), (1,0), (0,1); teacher: the same scaled by 3
    # and moved: every relation is the same, both terms 0 (RKD is invariant to the scale of
    # either side, as its distances are normalised by their mean).
    s = torch.tensor([[0., 0.], [1., 0.], [0., 1.]], dtype=torch.float64, requires_grad=True)
    t = 3 * s.detach() + torch.tensor([5., -2.], dtype=torch.float64)
    out = built(RKD(), s, t)
    assert total(out).item() == pytest.approx(0.0, abs=1e-12)
    total(out).backward()
    assert s.grad.abs().max().item() < 1e-10
    # Teacher: an equilateral triangle of side 1. Distances: the student's are 1, 1, sqrt 2
    # (twice each, mean (2 + sqrt 2) / 3), the teacher's all 1. Angles at each vertex: the
    # student's cosines are 0, 1/sqrt 2, 1/sqrt 2, the teacher's 1/2 each; the 27 triplets
    # hold, per vertex i, cos at (j, k) and (k, j) for the two others, and (j, j) = 1 twice on
    # both sides; the rest are 0 on both sides (a zero difference vector).
    teq = torch.tensor([[0., 0.], [1., 0.], [0.5, math.sqrt(3) / 2]], dtype=torch.float64)
    out = built(RKD(distance_weight=1.0, angle_weight=1.0), s.detach(), teq)
    mu = (2 + math.sqrt(2)) / 3
    huber = lambda x: 0.5 * x * x if abs(x) < 1 else abs(x) - 0.5  # noqa: E731
    dist = (4 * huber(1 / mu - 1) + 2 * huber(math.sqrt(2) / mu - 1)) / 9
    ang = 2 * (huber(0 - 0.5) + 2 * huber(1 / math.sqrt(2) - 0.5)) / 27
    assert out['loss_rkd_distance'].item() == pytest.approx(dist, rel=1e-12)
    assert out['loss_rkd_angle'].item() == pytest.approx(ang, rel=1e-12)


def test_rkd_degenerate_batches_and_no_teacher_gradient():
    # one sample: no relation, 0 with a (zero) gradient
    s = torch.randn(1, 5, requires_grad=True)
    out = total(built(RKD(), s, torch.randn(1, 7)))
    out.backward()
    assert out.item() == 0.0 and torch.equal(s.grad, torch.zeros(1, 5))
    # (the authors' code: NaN, the mean of no positive distance)
    assert torch.isnan(authors_rkd(torch.randn(1, 5), torch.randn(1, 7)))
    # coincident embeddings (all teacher ones; two student ones): distances sqrt(eps), finite
    # loss and gradient, equal to the authors'
    s = torch.randn(4, 5, dtype=torch.float64)
    s[1] = s[0]
    s.requires_grad_()
    out = total(built(RKD(), s, torch.ones(4, 7, dtype=torch.float64)))
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(s.grad).all()
    s2 = s.detach().clone().requires_grad_()
    ref = authors_rkd(s2, torch.ones(4, 7, dtype=torch.float64))
    ref.backward()
    torch.testing.assert_close(out, ref, **TOL)
    torch.testing.assert_close(s.grad, s2.grad, **TOL)
    # the teacher never gets a gradient
    t = torch.randn(4, 7, requires_grad=True)
    total(built(RKD(), torch.randn(4, 5, requires_grad=True), t)).backward()
    assert t.grad is None
    # half precision in, float32 loss out (AMP)
    out = built(RKD(), torch.randn(4, 5).half(), torch.randn(4, 7).half())
    assert out['loss_rkd_angle'].dtype == torch.float32
    d = pairwise_distances(torch.tensor([[0., 0.], [3., 4.]]))
    assert torch.allclose(d, torch.tensor([[0., 5.], [5., 0.]]))


def test_rkd_refuses_bad_inputs():
    with pytest.raises(ValueError, match='one batch'):
        RKD().build(torch.randn(4, 8), torch.randn(3, 8))
    with pytest.raises(ValueError, match=r'embeddings \(N, D\)'):
        RKD().build(torch.randn(4), torch.randn(4, 8))
    with pytest.raises(ValueError, match='distance_weight'):
        RKD(distance_weight=-1.0)
    with pytest.raises(ValueError, match='eps'):
        RKD(eps=0.0)


def test_rkd_builds_and_trains_in_the_digits_distiller(teacher_ckpts):
    from conftest import batch, build, digits_cfg
    model = build(digits_cfg(teacher_ckpts['digits'], blocks=dict(
        feat=dict(student='neck', teacher='neck', method=dict(type='RKD'), loss_weight=1.0))))
    losses = model(*batch(n=6, size=16), mode='loss')
    assert {'distill.feat.loss_rkd_distance', 'distill.feat.loss_rkd_angle'} <= set(losses), \
        sorted(losses)
    loss = sum(v for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(loss)
    loss.backward()
