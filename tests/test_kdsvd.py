"""KDSVD against the authors' formulation (loss and gradient, float64), the sign alignment, the
guard on non-finite SVD gradients, the connector for unequal channels and a build through the
digits distiller.

The authors' code read: HobbitLong/RepDistiller ``distiller_zoo/KDSVD.py`` (``KDSVD``: ``svd``,
``removenan``, ``align_rsv``) at b84f547, which we follow, and megvii-research/mdistiller
``mdistiller/distillers/KDSVD.py`` at a08d46f10d6102bd6e3f258ca5ac880b020ea259 (the same but
for its reshape: ``(N, C*H, W)`` instead of ``(N, HW, C)``; see mmkd/methods/kdsvd.py).
"""
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config

import mmkd.methods.kdsvd  # noqa: F401  (registration; the integrator adds it to __init__)
from mmkd.methods.kdsvd import KDSVD, align_to

# float64: the two formulations run the same LAPACK SVD on the same matrices, so they differ
# only by rounding
TOL = dict(rtol=1e-9, atol=1e-12)


def removenan(x):
    return torch.where(torch.isfinite(x), x, torch.zeros_like(x))


def authors_svd(feat, n=1):
    size = feat.shape
    x = feat.view(-1, size[1], size[2] * size[2]).transpose(-2, -1)
    u, s, v = torch.svd(x)
    u, s, v = removenan(u), removenan(s), removenan(v)
    if n > 0:
        u = F.normalize(u[:, :, :n], dim=1)
        s = F.normalize(s[:, :n], dim=1)
        v = F.normalize(v[:, :, :n], dim=1)
    return u, s, v


def authors_align_rsv(a, b):
    cosine = torch.matmul(a.transpose(-2, -1), b)
    max_abs_cosine, _ = torch.max(torch.abs(cosine), 1, keepdim=True)
    mask = torch.where(torch.eq(max_abs_cosine, torch.abs(cosine)), torch.sign(cosine),
                       torch.zeros_like(cosine))
    return torch.matmul(a, mask), b


def authors_kdsvd(g_s, g_t, k=1):
    """RepDistiller's KDSVD.forward, written out, summed as its loop does
    (``loss_kd = sum(loss_group)``); the teacher's maps come from a no_grad forward."""
    v_sb = v_tb = None
    losses = []
    for i, f_s, f_t in zip(range(len(g_s)), g_s, g_t):
        f_t = f_t.detach()
        _, s_t, v_t = authors_svd(f_t, k)
        _, _, v_s = authors_svd(f_s, k + 3)
        v_s, v_t = authors_align_rsv(v_s, v_t)
        s_t = s_t.unsqueeze(1)
        v_t = v_t * s_t
        v_s = v_s * s_t
        if i > 0:
            s_rbf = torch.exp(-(v_s.unsqueeze(2) - v_sb.unsqueeze(1)).pow(2) / 8)
            t_rbf = torch.exp(-(v_t.unsqueeze(2) - v_tb.unsqueeze(1)).pow(2) / 8)
            l2loss = (s_rbf - t_rbf.detach()).pow(2)
            l2loss = torch.where(torch.isfinite(l2loss), l2loss, torch.zeros_like(l2loss))
            losses.append(l2loss.sum())
        v_tb, v_sb = v_t, v_s
    bsz = g_s[0].shape[0]
    return sum(l / bsz for l in losses)


def _stages(seed, n=4, chans=(4, 8, 16), sizes=(8, 4, 2), scale=1.0):
    torch.manual_seed(seed)
    return [(torch.randn(n, c, h, h, dtype=torch.float64) * scale) for c, h in zip(chans, sizes)]


@pytest.mark.parametrize('k', [1, 2])
def test_kdsvd_equals_the_authors_loss_and_gradient(k):
    # equal channels per stage (the authors' pairs), different spatial sizes are free
    g_s = [x.requires_grad_() for x in _stages(0, sizes=(8, 4, 4))]
    g_t = _stages(1, sizes=(8, 8, 4))
    method = KDSVD(k=k)
    method.build(g_s, g_t)
    assert all(isinstance(c, torch.nn.Identity) for c in method.connectors)
    out = method(g_s, g_t)
    assert set(out) == {'loss_kdsvd'} and out['loss_kdsvd'].dtype == torch.float64
    g_s2 = [x.detach().clone().requires_grad_() for x in g_s]
    ref = authors_kdsvd(g_s2, g_t, k)
    assert ref.item() > 0
    torch.testing.assert_close(out['loss_kdsvd'], ref, **TOL)
    out['loss_kdsvd'].backward()
    ref.backward()
    for a, b in zip(g_s, g_s2):
        assert torch.isfinite(a.grad).all()
        torch.testing.assert_close(a.grad, b.grad, **TOL)


def test_kdsvd_alignment_picks_the_best_vector_with_its_sign():
    # student vectors e0, -e1, e2 (columns); teacher vectors e1 and (e0 + e2 * 0.5) / norm
    v_s = torch.tensor([[1., 0., 0.], [0., -1., 0.], [0., 0., 1.]])[None]
    v_t = F.normalize(torch.tensor([[0., 1.], [1., 0.], [0., 0.5]]), dim=0)[None]
    out = align_to(v_s, v_t)
    torch.testing.assert_close(out[0, :, 0], torch.tensor([0., 1., 0.]))  # -e1 flipped
    torch.testing.assert_close(out[0, :, 1], torch.tensor([1., 0., 0.]))  # e0 kept


def test_kdsvd_identical_maps_give_zero_and_teacher_gets_no_gradient():
    g = _stages(2)
    g_s = [x.clone().requires_grad_() for x in g]
    g_t = [x.clone().requires_grad_() for x in g]
    method = KDSVD()
    method.build(g_s, g_t)
    loss = method(g_s, g_t)['loss_kdsvd']
    assert loss.item() == pytest.approx(0.0, abs=1e-20)
    loss.backward()
    assert all(t.grad is None for t in g_t)
    # half precision in (AMP): the SVD runs in float32
    out = method([x.detach().half() for x in g], [x.detach().half() for x in g])['loss_kdsvd']
    assert out.dtype == torch.float32


def test_kdsvd_non_finite_svd_gradient_is_zeroed_per_sample():
    # Sample 0 of the second stage is all zero (a dead stage after a ReLU): its 8 singular
    # values are all 0, repeated, and torch's SVD gradient (the authors') is NaN there. Ours:
    # that sample's gradient through that level is 0, every other entry equals the authors'.
    # (A rank-1 map, e.g. constant, gives a finite but huge gradient, ~1e45, in both: the used
    # vectors 2..k+3 then lie in the null space and are ill-defined; that one is passed on.)
    g_s = _stages(3)
    g_s[1][0] = 0.0
    g_t = _stages(4)
    g_s = [x.requires_grad_() for x in g_s]
    g_s2 = [x.detach().clone().requires_grad_() for x in g_s]
    method = KDSVD()
    method.build(g_s, g_t)
    out = method(g_s, g_t)['loss_kdsvd']
    ref = authors_kdsvd(g_s2, g_t)
    torch.testing.assert_close(out, ref, **TOL)
    out.backward()
    ref.backward()
    assert not torch.isfinite(g_s2[1].grad[0]).all()  # the authors' gradient
    assert torch.equal(g_s[1].grad[0], torch.zeros_like(g_s[1].grad[0]))
    torch.testing.assert_close(g_s[1].grad[1:], g_s2[1].grad[1:], **TOL)
    for i in (0, 2):
        assert torch.isfinite(g_s[i].grad).all()


def test_kdsvd_connector_for_unequal_channels_and_bad_inputs():
    g_s = _stages(5, chans=(2, 8, 4))
    g_t = _stages(6, chans=(4, 8, 16))
    method = KDSVD()
    method.build(g_s, g_t)
    kinds = [type(c).__name__ for c in method.connectors]
    assert kinds == ['Conv2d', 'Identity', 'Conv2d']
    assert method.connectors[2].weight.shape == (16, 4, 1, 1)
    method.double()
    g_s = [x.requires_grad_() for x in g_s]
    loss = method(g_s, g_t)['loss_kdsvd']
    loss.backward()
    assert torch.isfinite(loss) and method.connectors[0].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="connector='none'"):
        KDSVD(connector='none').build(g_s, g_t)
    with pytest.raises(ValueError, match='at least two levels'):
        KDSVD().build(g_s[0], g_t[0])
    with pytest.raises(ValueError, match='feature maps'):
        KDSVD().build([torch.randn(2, 4)] * 2, [torch.randn(2, 4)] * 2)
    with pytest.raises(ValueError, match='k'):
        KDSVD(k=0)


def test_kdsvd_digits_demo_block_builds_and_trains_through_the_distiller(teacher_ckpts):
    from conftest import DEMO, batch, build, digits_cfg
    cfg = Config.fromfile(f'{DEMO}/digits/kdsvd_resnet34-wide_resnet18-tiny_digits.py')
    d = build(digits_cfg(teacher_ckpts['digits'], blocks=cfg.model.blocks))
    (name, method), = d.methods.items()
    assert type(method).__name__ == 'KDSVD'
    losses = d(*batch(n=6, size=16), mode='loss')
    loss = losses[f'distill.{name}.loss_kdsvd']
    assert torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0
               for p in d.student.backbone.layer1.parameters())


def test_kdsvd_non_finite_student_map_gives_a_non_finite_loss_not_an_svd_error():
    """A student map that diverged reaches the distiller's non-finite check as a NaN loss
    (which stops or skips naming block and iteration), not as an SVD exception."""
    from mmkd.methods.kdsvd import KDSVD
    torch.manual_seed(0)
    s = [torch.randn(2, 4, 4, 4), torch.randn(2, 4, 2, 2)]
    t = [torch.randn(2, 4, 4, 4), torch.randn(2, 4, 2, 2)]
    method = KDSVD()
    method.build(s, t)
    s[1][0, 0, 0, 0] = float('inf')
    loss = method(s, t)['loss_kdsvd']
    assert torch.isnan(loss)
