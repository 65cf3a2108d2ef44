"""NST against the authors' formulation (loss and gradient, float64), a hand case, channel and
size mismatches, AMP dtype and a build through the digits distiller.

The authors' code read: HobbitLong/RepDistiller ``distiller_zoo/NST.py`` (``NSTLoss``,
``full_loss=True``) at b84f547 and megvii-research/mdistiller ``mdistiller/distillers/NST.py``
(``nst_loss``, ``single_stage_nst_loss``, ``poly_kernel``) at
a08d46f10d6102bd6e3f258ca5ac880b020ea259 (the same formula).
"""
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config

import mmkd.methods.nst  # noqa: F401  (registration; the integrator adds it to __init__)
from mmkd.methods.nst import NST

TOL = dict(rtol=1e-10, atol=1e-12)  # float64: the two formulations differ only by rounding


def authors_poly_kernel(a, b):
    a = a.unsqueeze(1)
    b = b.unsqueeze(2)
    return (a * b).sum(-1).pow(2)


def authors_single_stage(f_s, f_t):
    """mdistiller's single_stage_nst_loss, written out: square pooling by heights, (N, C, HW)
    rows L2-normalised, MMD^2 with the teacher term detached."""
    s_H, t_H = f_s.shape[2], f_t.shape[2]
    if s_H > t_H:
        f_s = F.adaptive_avg_pool2d(f_s, (t_H, t_H))
    elif s_H < t_H:
        f_t = F.adaptive_avg_pool2d(f_t, (s_H, s_H))
    f_s = F.normalize(f_s.view(f_s.shape[0], f_s.shape[1], -1), dim=2)
    f_t = F.normalize(f_t.view(f_t.shape[0], f_t.shape[1], -1), dim=2)
    return (authors_poly_kernel(f_t, f_t).mean().detach() + authors_poly_kernel(f_s, f_s).mean()
            - 2 * authors_poly_kernel(f_s, f_t).mean())


def authors_nst(g_s, g_t):
    # the teacher's features come from a no_grad forward in the authors' loops
    return sum(authors_single_stage(f_s, f_t.detach()) for f_s, f_t in zip(g_s, g_t))


def test_nst_equals_the_authors_loss_and_gradient():
    torch.manual_seed(0)
    # three stages, different channels per side, pooling on either side; ReLU-like maps
    g_s = [torch.randn(4, 3, 8, 8).relu(), torch.randn(4, 5, 4, 4), torch.randn(4, 6, 2, 2)]
    g_t = [torch.randn(4, 6, 4, 4).relu(), torch.randn(4, 7, 4, 4), torch.randn(4, 8, 4, 4)]
    g_s = [x.double().requires_grad_() for x in g_s]
    g_t = [x.double() for x in g_t]
    method = NST()
    method.build(g_s, g_t)
    out = method(g_s, g_t)
    assert set(out) == {'loss_nst'} and out['loss_nst'].dtype == torch.float64
    g_s2 = [x.detach().clone().requires_grad_() for x in g_s]
    ref = authors_nst(g_s2, g_t)
    torch.testing.assert_close(out['loss_nst'], ref, **TOL)
    out['loss_nst'].backward()
    ref.backward()
    for a, b in zip(g_s, g_s2):
        torch.testing.assert_close(a.grad, b.grad, **TOL)


def test_nst_by_hand():
    # One sample, 1x2 maps. Student: one channel (1, 0); teacher: channels (1, 0), (0, 1)
    # (both already unit). K_ss = 1; K_tt = [[1, 0], [0, 1]] (mean 1/2); K_st = 1, 0 (mean 1/2).
    # MMD^2 = 1/2 + 1 - 2 * 1/2 = 1/2.
    s = torch.tensor([[[[1., 0.]]]], dtype=torch.float64)
    t = torch.tensor([[[[1., 0.]], [[0., 1.]]]], dtype=torch.float64)
    method = NST()
    method.build(s, t)
    assert method(s, t)['loss_nst'].item() == pytest.approx(0.5, abs=1e-12)
    # the scale of a channel does not matter (normalised); identical sets give 0
    assert method(3 * t, t)['loss_nst'].item() == pytest.approx(0.0, abs=1e-12)


def test_nst_teacher_gets_no_gradient_and_amp_gives_float32():
    s = torch.randn(2, 3, 4, 4, requires_grad=True)
    t = torch.randn(2, 6, 4, 4, requires_grad=True)
    method = NST()
    method.build(s, t)
    method(s, t)['loss_nst'].backward()
    assert t.grad is None and s.grad.abs().sum() > 0
    out = method(s.detach().half(), t.detach().half())['loss_nst']
    assert out.dtype == torch.float32 and torch.isfinite(out)


def test_nst_refuses_bad_inputs():
    with pytest.raises(ValueError, match='feature maps'):
        NST().build(torch.randn(4, 8), torch.randn(4, 8))
    with pytest.raises(ValueError, match='levels'):
        NST().build((torch.randn(2, 3, 4, 4),) * 2, torch.randn(2, 3, 4, 4))


def test_nst_digits_demo_block_builds_and_trains_through_the_distiller(teacher_ckpts):
    from conftest import DEMO, batch, build, digits_cfg
    cfg = Config.fromfile(f'{DEMO}/digits/nst_resnet34-wide_resnet18-tiny_digits.py')
    d = build(digits_cfg(teacher_ckpts['digits'], blocks=cfg.model.blocks))
    (name, method), = d.methods.items()
    assert type(method).__name__ == 'NST'
    losses = d(*batch(n=6, size=16), mode='loss')
    loss = losses[f'distill.{name}.loss_nst']
    assert torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0
               for p in d.student.backbone.layer1.parameters())
