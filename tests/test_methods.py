import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmkd.losses import kl_divergence_with_temperature
from mmkd.methods import FeatureMSE, LogitKD


def manual_kd(s, t, tau):
    p_t = F.softmax(t / tau, dim=1)
    return (p_t * (p_t.log() - F.log_softmax(s / tau, dim=1))).sum(1).mean() * tau ** 2


def test_kd_matches_formula_and_torch_kl():
    torch.manual_seed(0)
    s, t = torch.randn(5, 7), torch.randn(5, 7)
    for tau in (1.0, 4.0):
        ours = kl_divergence_with_temperature(s, t, tau)
        torch.testing.assert_close(ours, manual_kd(s, t, tau))
        ref = F.kl_div(F.log_softmax(s / tau, 1), F.log_softmax(t / tau, 1),
                       reduction='batchmean', log_target=True) * tau ** 2
        torch.testing.assert_close(ours, ref)


def test_kd_limits():
    t = torch.randn(4, 10)
    assert kl_divergence_with_temperature(t.clone(), t, 4.0).abs() < 1e-6  # identical -> 0
    # Adding a constant to every logit leaves the softmax unchanged.
    assert kl_divergence_with_temperature(t + 3.0, t, 2.0).abs() < 1e-5
    # At large tau, tau^2 * KL -> sum of squared centred-logit differences / (2C)
    # (Hinton et al. 2015, section 2.1). Float64 keeps the tiny KL free of rounding noise.
    s, t = torch.randn(4, 10, dtype=torch.float64), torch.randn(4, 10, dtype=torch.float64)
    centred = lambda z: z - z.mean(1, keepdim=True)
    approx = (centred(s) - centred(t)).pow(2).sum(1).mean() / (2 * 10)
    torch.testing.assert_close(kl_divergence_with_temperature(s, t, 1000.0), approx,
                               rtol=1e-2, atol=0)


def test_logit_kd_dense_maps_average_over_pixels_and_resize():
    torch.manual_seed(0)
    s, t = torch.randn(2, 5, 4, 4), torch.randn(2, 5, 4, 4)
    method = LogitKD(tau=2.0)
    method.build(s, t)
    loss = method(s, t)['loss_kd']
    flat = lambda x: x.permute(0, 2, 3, 1).reshape(-1, 5)
    torch.testing.assert_close(loss, manual_kd(flat(s), flat(t), 2.0))
    small = torch.randn(2, 5, 2, 2)
    assert method(small, t)['loss_kd'].shape == ()
    with pytest.raises(ValueError, match='same number of classes'):
        LogitKD().build(torch.randn(2, 4), torch.randn(2, 5))


def test_feature_mse_sizes_projector_from_example():
    s_map, t_map = torch.randn(2, 8, 6, 6), torch.randn(2, 16, 3, 3)
    m = FeatureMSE()
    m.build(s_map, t_map)
    conv = m.connectors[0]
    assert isinstance(conv, nn.Conv2d) and (conv.in_channels, conv.out_channels) == (8, 16)
    loss = m(s_map, t_map)['loss_mse']
    expected = F.mse_loss(F.interpolate(conv(s_map), size=(3, 3), mode='bilinear'), t_map)
    torch.testing.assert_close(loss, expected)

    v = FeatureMSE()
    v.build(torch.randn(2, 8), torch.randn(2, 12))
    assert isinstance(v.connectors[0], nn.Linear)
    same = FeatureMSE()
    same.build(t_map, t_map)
    assert isinstance(same.connectors[0], nn.Identity)
    assert same(t_map, t_map)['loss_mse'] == 0
    with pytest.raises(ValueError, match='equal channels'):
        FeatureMSE(projector='none').build(s_map, t_map)


def test_feature_mse_multilevel_per_level_and_shared():
    s = tuple(torch.randn(2, 4, 8 // 2 ** i, 8 // 2 ** i) for i in range(3))
    t = tuple(torch.randn(2, 6, 8 // 2 ** i, 8 // 2 ** i) for i in range(3))
    per = FeatureMSE()
    per.build(s, t)
    assert len(per.connectors) == 3
    total = per(s, t)['loss_mse']
    expected = sum(F.mse_loss(c(a), b) for c, a, b in zip(per.connectors, s, t))
    torch.testing.assert_close(total, expected)
    shared = FeatureMSE(share_levels=True, level_reduction='mean')
    shared.build(s, t)
    assert len(shared.connectors) == 1
    expected = sum(F.mse_loss(shared.connectors[0](a), b) for a, b in zip(s, t)) / 3
    torch.testing.assert_close(shared(s, t)['loss_mse'], expected)
    with pytest.raises(ValueError, match='levels'):
        per(s[:2], t)


def test_gradients_reach_student_and_projector_only():
    s = torch.randn(2, 4, 5, 5, requires_grad=True)
    t = torch.randn(2, 6, 5, 5)
    m = FeatureMSE()
    m.build(s, t)
    m(s, t)['loss_mse'].backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert m.connectors[0].weight.grad.abs().sum() > 0


# --- DIST (Huang et al., 2022) and the named distances ---------------------------------------

def manual_dist(s, t, tau=1.0, beta=1.0, gamma=1.0):
    """Row-by-row Pearson correlations, written out with explicit loops."""
    def rho(a, b):
        a, b = a - a.mean(), b - b.mean()
        return float((a * b).sum() / (a.norm() * b.norm()))
    p_s, p_t = (s / tau).softmax(1).double(), (t / tau).softmax(1).double()
    inter = 1 - sum(rho(p_s[i], p_t[i]) for i in range(len(p_s))) / len(p_s)
    intra = 1 - sum(rho(p_s[:, c], p_t[:, c]) for c in range(p_s.shape[1])) / p_s.shape[1]
    return tau ** 2 * (beta * inter + gamma * intra)


def test_dist_matches_formula_limits_and_dense_maps():
    from mmkd.losses import dist_loss
    from mmkd.methods import DIST
    s = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0], [1.0, 1.0, 0.0], [-2.0, 0.0, 2.0]])
    t = torch.tensor([[1.5, 1.0, -0.5], [0.0, 1.0, 2.0], [2.0, 0.0, 0.0], [-1.0, 0.5, 1.0]])
    for tau, beta, gamma in ((1.0, 1.0, 1.0), (4.0, 2.0, 0.5)):
        assert float(dist_loss(s, t, tau, beta, gamma)) == pytest.approx(
            manual_dist(s, t, tau, beta, gamma), rel=1e-5)
    assert float(dist_loss(t, t)) < 1e-6  # identical predictions -> perfectly correlated
    # Correlation ignores a positive affine change of the probabilities: sharpening the
    # teacher leaves the inter-class term of a two-class problem unchanged at 0.
    two = torch.tensor([[1.0, -1.0], [0.5, 0.2]])
    assert float(dist_loss(two, 3 * two, beta=1.0, gamma=0.0)) < 1e-6
    # Dense maps: every pixel is a sample.
    torch.manual_seed(0)
    sm, tm = torch.randn(2, 5, 3, 3), torch.randn(2, 5, 3, 3)
    flat = lambda x: x.permute(0, 2, 3, 1).reshape(-1, 5)
    torch.testing.assert_close(dist_loss(sm, tm), dist_loss(flat(sm), flat(tm)))
    method = DIST()
    method.build(sm, tm)
    torch.testing.assert_close(method(sm, tm)['loss_dist'], dist_loss(sm, tm))


def test_build_distance_names_and_options():
    from mmkd.losses import build_distance, kl_divergence_with_temperature
    s, t = torch.randn(3, 4), torch.randn(3, 4)
    torch.testing.assert_close(build_distance('mse')(s, t), F.mse_loss(s, t))
    torch.testing.assert_close(build_distance(dict(type='kl', tau=2.0))(s, t),
                               kl_divergence_with_temperature(s, t, 2.0))
    with pytest.raises(ValueError, match=r"valid distances: \['dist', 'kl', 'mse'\]"):
        build_distance('l1')
    with pytest.raises(ValueError, match=r"valid options: \['tau'\]"):
        build_distance(dict(type='kl', beta=1.0))
