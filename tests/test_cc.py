"""CC against the authors' formulations (loss and gradient, float64, identical embedding
weights), the embeddings built from the dry run, degenerate batches and a build through the
digits distiller.

The authors' code read: HobbitLong/RepDistiller ``distiller_zoo/CC.py`` (``Correlation``),
``models/util.py`` (``LinearEmbed``) and ``train_student.py`` (the embeddings on ``feat[-1]``,
both trained) at b84f547, and yoshitomo-matsubara/torchdistill
``torchdistill/losses/mid_level.py`` (``CCKDLoss``) with ``torchdistill/models/wrapper.py``
(``Linear4CCKD``) at 3e4373c.
"""
import math

import pytest
import torch

import mmkd.methods.cc  # noqa: F401  (registration; mmkd/methods/__init__.py after merging)
from mmkd.methods.cc import CC

TOL = dict(rtol=1e-10, atol=1e-12)  # float64: the formulations differ only by rounding


def authors_linear_embed(linear, x):
    """RepDistiller's LinearEmbed.forward: x.view(N, -1), then the linear layer."""
    return linear(x.view(x.shape[0], -1))


def authors_correlation(f_s, f_t):
    """RepDistiller's Correlation.forward, written out."""
    delta = torch.abs(f_s - f_t)
    return torch.mean((delta[:-1] * delta[1:]).sum(1))


def torchdistill_cckd(s_out, t_out, kernel, gamma=0.4, max_p=2):
    """torchdistill's CCKDLoss.forward (reduction 'batchmean'), written out, with its
    compute_cc_mat_by_bilinear_pool and its row-by-row compute_cc_mat_by_gaussian_rbf."""
    def bilinear(x):
        return torch.matmul(x, torch.t(x))

    def gaussian(x):
        rows = []
        for out in x:
            row = 1
            right = torch.matmul(out, torch.t(x))
            for p in range(1, max_p + 1):
                row += ((2 * gamma) ** p) / math.factorial(p) * (right ** p)
            row *= math.exp(-2 * gamma)
            rows.append(row.squeeze(0))
        return torch.stack(rows)

    fn = bilinear if kernel == 'bilinear' else gaussian
    return torch.dist(fn(s_out), fn(t_out), 2) / s_out.shape[0] ** 2


def run(method, s, t):
    """Build on the inputs (the dry run), cast the embeddings to float64, return the loss and
    the two linear layers."""
    method.build(s, t)
    method.double()
    conn = method.connectors[0]
    return method(s, t)['loss_cc'], conn['student'], conn['teacher']


@pytest.mark.parametrize('kernel', ['repdistiller', 'gaussian', 'bilinear'])
def test_cc_equals_the_authors_loss_and_gradient(kernel):
    torch.manual_seed(0)
    # different widths; a teacher map (N, C, H, W) flattened as LinearEmbed's view(N, -1)
    s = (torch.randn(10, 16, dtype=torch.float64) * 0.5).requires_grad_()
    t = torch.randn(10, 8, 2, 2, dtype=torch.float64)
    out, lin_s, lin_t = run(CC(embed_dim=6, kernel=kernel), s, t)
    assert out.dtype == torch.float64
    assert lin_s.weight.shape == (6, 16) and lin_t.weight.shape == (6, 32)
    # the authors' side: identical weights, copied into fresh layers
    ref_s, ref_t = torch.nn.Linear(16, 6).double(), torch.nn.Linear(32, 6).double()
    ref_s.load_state_dict(lin_s.state_dict())
    ref_t.load_state_dict(lin_t.state_dict())
    s2 = s.detach().clone().requires_grad_()
    e_s, e_t = authors_linear_embed(ref_s, s2), authors_linear_embed(ref_t, t.detach())
    ref = authors_correlation(e_s, e_t) if kernel == 'repdistiller' else \
        torchdistill_cckd(e_s, e_t, kernel)
    torch.testing.assert_close(out, ref, **TOL)
    out.backward()
    ref.backward()
    torch.testing.assert_close(s.grad, s2.grad, **TOL)
    # both embeddings are trained (RepDistiller's trainable_list holds embed_s and embed_t)
    torch.testing.assert_close(lin_s.weight.grad, ref_s.weight.grad, **TOL)
    torch.testing.assert_close(lin_t.weight.grad, ref_t.weight.grad, **TOL)


def test_cc_by_hand_and_degenerate_batches():
    method = CC(embed_dim=2)
    s, t = torch.zeros(3, 2, dtype=torch.float64), torch.zeros(3, 2, dtype=torch.float64)
    method.build(s, t)
    method.double()
    with torch.no_grad():
        for lin in method.connectors[0].values():
            lin.weight.copy_(torch.eye(2))
            lin.bias.zero_()
    # identity embeddings: delta = |s - t| = rows (1, 2), (3, 0), (1, 1):
    # consecutive products (1*3 + 2*0) and (3*1 + 0*1), mean 3
    s = torch.tensor([[1., 2.], [3., 0.], [1., 1.]], dtype=torch.float64)
    assert method(s, t)['loss_cc'].item() == pytest.approx(3.0, rel=1e-12)
    # one sample: no consecutive pair, 0 (the authors': NaN, the mean of nothing)
    one = torch.ones(1, 2, dtype=torch.float64, requires_grad=True)
    out = method(one, t[:1])['loss_cc']
    out.backward()
    assert out.item() == 0.0 and torch.equal(one.grad, torch.zeros(1, 2, dtype=torch.float64))
    assert torch.isnan(authors_correlation(torch.ones(1, 2), torch.zeros(1, 2)))
    # the matrix kernels where the two sides agree: 0 with a finite (zero) gradient
    g = CC(embed_dim=2, kernel='gaussian')
    x = torch.randn(4, 2, requires_grad=True)
    g.build(x, x)
    g.connectors[0]['teacher'].load_state_dict(g.connectors[0]['student'].state_dict())
    out = g(x, x.detach())['loss_cc']
    out.backward()
    assert out.item() == 0.0 and torch.isfinite(x.grad).all()


def test_cc_refuses_bad_inputs():
    with pytest.raises(ValueError, match='same batch|one batch'):
        CC().build(torch.randn(4, 3), torch.randn(5, 3))
    with pytest.raises(ValueError, match='needs features'):
        CC().build(torch.randn(4), torch.randn(4, 3))
    with pytest.raises(ValueError, match='kernel'):
        CC(kernel='rbf')


def test_cc_builds_and_trains_in_the_digits_distiller(teacher_ckpts):
    from conftest import batch, build, digits_cfg
    model = build(digits_cfg(teacher_ckpts['digits'], blocks=dict(
        feat=dict(student='neck', teacher='neck', method=dict(type='CC'), loss_weight=1.0))))
    lin = model.blocks['feat'].method.connectors[0]
    assert lin['student'].weight.shape == (128, 32) and lin['teacher'].weight.shape == (128, 128)
    losses = model(*batch(n=6, size=16), mode='loss')
    assert 'distill.feat.loss_cc' in losses, sorted(losses)
    loss = sum(v for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(loss)
    loss.backward()
    assert lin['teacher'].weight.grad is not None and lin['student'].weight.grad is not None
