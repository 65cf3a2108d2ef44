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
