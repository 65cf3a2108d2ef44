"""VID against the authors' formulation (loss and gradient, float64, identical weights), its
initial variance, learned variance, pooling, AMP dtype and a build through the digits
distiller.

The authors' code read: HobbitLong/RepDistiller ``distiller_zoo/VID.py`` (``VIDLoss``, "code from
author") at b84f547 and megvii-research/mdistiller ``mdistiller/distillers/VID.py``
(``vid_loss``, ``init_vid_modules``) at a08d46f10d6102bd6e3f258ca5ac880b020ea259 (the same
formula; mdistiller does not register its log-scales, see mmkd/methods/vid.py).
"""
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.config import Config

import mmkd.methods.vid  # noqa: F401  (registration; the integrator adds it to __init__)
from mmkd.methods.vid import VID

TOL = dict(rtol=1e-10, atol=1e-12)  # float64: the two formulations differ only by rounding


class AuthorsVIDLoss(nn.Module):
    """RepDistiller's VIDLoss, written out: conv1x1 (no bias) x3 with ReLUs, log_scale
    initialised to log(exp(init_pred_var - eps) - 1), square adaptive pooling by heights,
    variance log(1 + exp(log_scale)) + eps, mean Gaussian negative log-likelihood."""

    def __init__(self, c_in, c_mid, c_out, init_pred_var=5.0, eps=1e-5):
        super().__init__()
        self.regressor = nn.Sequential(
            nn.Conv2d(c_in, c_mid, 1, bias=False), nn.ReLU(),
            nn.Conv2d(c_mid, c_mid, 1, bias=False), nn.ReLU(),
            nn.Conv2d(c_mid, c_out, 1, bias=False))
        self.log_scale = nn.Parameter(
            np.log(np.exp(init_pred_var - eps) - 1.0) * torch.ones(c_out))
        self.eps = eps

    def forward(self, input, target):
        s_H, t_H = input.shape[2], target.shape[2]
        if s_H > t_H:
            input = F.adaptive_avg_pool2d(input, (t_H, t_H))
        elif s_H < t_H:
            target = F.adaptive_avg_pool2d(target, (s_H, s_H))
        pred_mean = self.regressor(input)
        pred_var = torch.log(1.0 + torch.exp(self.log_scale)) + self.eps
        pred_var = pred_var.view(1, -1, 1, 1)
        neg_log_prob = 0.5 * ((pred_mean - target) ** 2 / pred_var + torch.log(pred_var))
        return torch.mean(neg_log_prob)


def authors_total(levels, g_s, g_t):
    # RepDistiller helper/loops.py: loss_kd = sum(c(f_s, f_t) for each stage), teacher no grad
    return sum(c(f_s, f_t.detach()) for c, f_s, f_t in zip(levels, g_s, g_t))


def _features(seed=0):
    torch.manual_seed(seed)
    # three stages; student maps larger on level 0 (pooled), teacher larger on level 2
    g_s = [torch.randn(4, 3, 8, 8), torch.randn(4, 5, 4, 4), torch.randn(4, 6, 2, 2)]
    g_t = [torch.randn(4, 6, 4, 4), torch.randn(4, 7, 4, 4), torch.randn(4, 8, 4, 4)]
    g_s = [x.double().requires_grad_() for x in g_s]
    return g_s, [x.double() for x in g_t]


def test_vid_equals_the_authors_loss_and_gradient():
    g_s, g_t = _features()
    method = VID()
    method.build(g_s, g_t)
    method.double()
    # the authors' modules with our (random) weights, and a log-scale moved off its start so
    # the variance differs per channel
    authors = nn.ModuleList(AuthorsVIDLoss(s.shape[1], t.shape[1], t.shape[1])
                            for s, t in zip(g_s, g_t)).double()
    with torch.no_grad():
        for ours, theirs in zip(method.connectors, authors):
            ours.log_scale.add_(torch.linspace(-3, 3, ours.log_scale.numel()).double())
            theirs.regressor.load_state_dict(ours.regressor.state_dict())
            theirs.log_scale.copy_(ours.log_scale)
    out = method(g_s, g_t)
    assert set(out) == {'loss_vid'} and out['loss_vid'].dtype == torch.float64
    g_s2 = [x.detach().clone().requires_grad_() for x in g_s]
    ref = authors_total(authors, g_s2, g_t)
    torch.testing.assert_close(out['loss_vid'], ref, **TOL)
    out['loss_vid'].backward()
    ref.backward()
    for a, b in zip(g_s, g_s2):
        torch.testing.assert_close(a.grad, b.grad, **TOL)
    for ours, theirs in zip(method.connectors, authors):  # the learned variance and regressor
        torch.testing.assert_close(ours.log_scale.grad, theirs.log_scale.grad, **TOL)
        torch.testing.assert_close(ours.regressor[0].weight.grad,
                                   theirs.regressor[0].weight.grad, **TOL)


def test_vid_initial_variance_and_a_hand_case():
    s, t = torch.randn(2, 3, 4, 4, dtype=torch.float64), torch.randn(2, 5, 4, 4,
                                                                       dtype=torch.float64)
    method = VID(init_pred_var=5.0, eps=1e-5)
    method.build(s, t)
    method.double()
    level = method.connectors[0]
    var = F.softplus(level.log_scale) + 1e-5
    # the log-scale is a float32 parameter (as the authors': numpy scalar x float32 ones), so
    # the variance is 5 to float32 precision
    torch.testing.assert_close(var, torch.full((5,), 5.0, dtype=torch.float64), rtol=1e-7,
                               atol=0)
    # a zero regressor predicts 0: loss = 0.5 * (mean(t^2) / 5 + log 5)
    with torch.no_grad():
        for m in level.regressor:
            if isinstance(m, nn.Conv2d):
                m.weight.zero_()
    loss = method(s, t)['loss_vid']
    v = var[0].item()
    assert loss.item() == pytest.approx(0.5 * (t.pow(2).mean().item() / v + math.log(v)),
                                        rel=1e-12)


def test_vid_variance_is_a_trained_parameter_and_teacher_gets_no_gradient():
    s = torch.randn(4, 3, 4, 4, requires_grad=True)
    t = torch.randn(4, 6, 4, 4, requires_grad=True)
    method = VID()
    method.build((s, s), (t, t))  # two levels: one regressor and one variance each
    names = {n for n, _ in method.named_parameters()}
    assert {'connectors.0.log_scale', 'connectors.1.log_scale'} <= names
    method((s, s), (t, t))['loss_vid'].backward()
    assert t.grad is None
    assert method.connectors[0].log_scale.grad.abs().sum() > 0
    # half precision in (AMP): float32 loss
    out = method((s.detach().half(), s.detach().half()), (t.detach().half(),) * 2)
    assert out['loss_vid'].dtype == torch.float32 and torch.isfinite(out['loss_vid'])


def test_vid_refuses_bad_inputs():
    with pytest.raises(ValueError, match='feature maps'):
        VID().build(torch.randn(4, 8), torch.randn(4, 8))
    with pytest.raises(ValueError, match='init_pred_var'):
        VID(init_pred_var=1e-6, eps=1e-5)
    with pytest.raises(ValueError, match='eps'):
        VID(eps=0.0)


def test_vid_digits_demo_block_builds_and_trains_through_the_distiller(teacher_ckpts):
    from conftest import DEMO, batch, build, digits_cfg
    cfg = Config.fromfile(f'{DEMO}/digits/vid_resnet34-wide_resnet18-tiny_digits.py')
    d = build(digits_cfg(teacher_ckpts['digits'], blocks=cfg.model.blocks))
    (name, method), = d.methods.items()
    assert type(method).__name__ == 'VID' and len(method.connectors) == 4
    losses = d(*batch(n=6, size=16), mode='loss')
    loss = losses[f'distill.{name}.loss_vid']
    assert torch.isfinite(loss)
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0
               for p in d.student.backbone.layer1.parameters())
