"""WSLD against the authors' formulation (bellymonster/Weighted-Soft-Label-Distillation,
``knowledge_distiller.py`` at 67820dd, the same as MMRazor 0fe347f
``weighted_soft_label_distillation.py``), loss and gradient in float64 (tolerance: rtol 1e-10,
atol 1e-12); a hand case; bad inputs; one step through the digits distiller."""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.structures import DataSample

import mmkd.methods.wsld  # noqa: F401  (registers WSLD until mmkd.methods imports it)
from mmkd.methods.wsld import WSLD

TOL = dict(rtol=1e-10, atol=1e-12)


def samples(labels):
    return [DataSample().set_gt_label(int(y)) for y in labels]


def authors_wsld(fc_s, fc_t, label, T, num_classes):
    """WSLDistiller.forward's soft loss, written out (before their alpha 2.5)."""
    t_soft_label = F.softmax(fc_t / T, dim=1)
    softmax_loss = -torch.sum(t_soft_label * nn.LogSoftmax(dim=1)(fc_s / T), 1, keepdim=True)
    log_softmax_s = nn.LogSoftmax(dim=1)(fc_s.detach())
    log_softmax_t = nn.LogSoftmax(dim=1)(fc_t.detach())
    one_hot_label = F.one_hot(label, num_classes=num_classes).to(fc_s.dtype)
    softmax_loss_s = -torch.sum(one_hot_label * log_softmax_s, 1, keepdim=True)
    softmax_loss_t = -torch.sum(one_hot_label * log_softmax_t, 1, keepdim=True)
    focal_weight = softmax_loss_s / (softmax_loss_t + 1e-7)
    focal_weight = torch.max(focal_weight, torch.zeros(1, dtype=fc_s.dtype))
    focal_weight = 1 - torch.exp(-focal_weight)
    return (T ** 2) * torch.mean(focal_weight * softmax_loss)


@pytest.mark.parametrize('tau', [1.0, 2.0, 4.0])
def test_wsld_equals_the_authors_formulation_loss_and_gradient(tau):
    torch.manual_seed(0)
    s = (torch.randn(16, 10, dtype=torch.float64) * 2).requires_grad_()
    t = torch.randn(16, 10, dtype=torch.float64) * 3
    y = torch.randint(0, 10, (16, ))
    out = WSLD(tau=tau)(s, t, samples(y))
    assert set(out) == {'loss_wsld', 'wsld_weight'}
    s2 = s.detach().clone().requires_grad_()
    ref = authors_wsld(s2, t, y, tau, 10)
    torch.testing.assert_close(out['loss_wsld'], ref, **TOL)
    out['loss_wsld'].backward()
    ref.backward()
    torch.testing.assert_close(s.grad, s2.grad, **TOL)


def test_wsld_by_hand():
    # C = 2, label 0, tau 1. Student (0, 0): p = 1/2, ce_s = ln 2. Teacher (ln 3, 0): p = 3/4,
    # ce_t = ln(4/3). w = 1 - exp(-ln 2 / ln(4/3)); soft CE = -(3/4 ln 1/2 + 1/4 ln 1/2) = ln 2.
    out = WSLD(tau=1.0, eps=1e-30)(torch.zeros(1, 2, dtype=torch.float64),
                                  torch.tensor([[math.log(3), 0.]], dtype=torch.float64),
                                  samples([0]))
    w = 1 - math.exp(-math.log(2) / math.log(4 / 3))
    assert out['wsld_weight'].item() == pytest.approx(w, rel=1e-12)
    assert out['loss_wsld'].item() == pytest.approx(w * math.log(2), rel=1e-12)
    # A student far better than the teacher on the label gets w -> 0 ... a far worse one w -> 1.
    good = WSLD()(torch.tensor([[20., 0.]]), torch.tensor([[1., 0.]]), samples([0]))
    bad = WSLD()(torch.tensor([[-20., 0.]]), torch.tensor([[1., 0.]]), samples([0]))
    assert good['wsld_weight'].item() < 1e-6 and bad['wsld_weight'].item() > 0.999


def test_wsld_weight_is_constant_and_half_precision_is_computed_in_float32():
    torch.manual_seed(1)
    s = torch.randn(4, 5, requires_grad=True)
    t, y = torch.randn(4, 5), torch.tensor([0, 1, 2, 3])
    out = WSLD()(s, t, samples(y))
    assert not out['wsld_weight'].requires_grad
    half = WSLD()(s.detach().half(), t.half(), samples(y))
    assert half['loss_wsld'].dtype == torch.float32 and torch.isfinite(half['loss_wsld'])


def test_wsld_refuses_bad_inputs():
    s, t = torch.randn(2, 4), torch.randn(2, 4)
    with pytest.raises(ValueError, match='WSLD needs the ground-truth labels'):
        WSLD()(s, t, None)
    with pytest.raises(ValueError, match=r'labels \[0, 4\] outside the 4 classes'):
        WSLD()(s, t, samples([0, 4]))
    with pytest.raises(ValueError, match='same number of classes'):
        WSLD().build(torch.randn(2, 4), torch.randn(2, 5))
    with pytest.raises(ValueError, match=r'logits \(N, C\)'):
        WSLD().build(torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3))
    with pytest.raises(ValueError, match='tau must be positive'):
        WSLD(tau=0)


def test_wsld_builds_and_trains_in_the_digits_distiller(teacher_ckpts):
    from conftest import batch, build, digits_cfg
    model = build(digits_cfg(teacher_ckpts['digits'], blocks=dict(
        logits=dict(student='head.fc', teacher='head.fc', method=dict(type='WSLD'),
                    loss_weight=2.5))))
    losses = model(*batch(n=6, size=16), mode='loss')
    assert 'distill.logits.loss_wsld' in losses, sorted(losses)
    loss = sum(v for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(loss)
    loss.backward()
