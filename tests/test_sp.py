"""SP (similarity-preserving KD) against the authors' formulation (loss and gradient, float64),
a hand-computed case, its scale invariances, AMP, and a build through a Distiller on the digits
demo teacher/student with the demo config's block."""
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config

from mmkd.methods.sp import SP

from conftest import DEMO, batch, build, digits_cfg

# Float64 on both sides and the same operations in the same order: equal to rounding.
TOL = dict(rtol=1e-10, atol=1e-12)


def authors_similarity_loss(f_s, f_t):
    """mdistiller ``mdistiller/distillers/SP.py`` (commit a08d46f10d6102bd6e3f258ca5ac880b020ea259)
    ``similarity_loss``, identical to RepDistiller ``distiller_zoo/SP.py`` (commit
    b84f547c5db6a35318d4671d7d5c4de74c822403), written out: flatten, Gram matrix, F.normalize
    (rows, p 2, eps 1e-12), squared difference summed over the (b, b) entries, divided by b^2;
    the result has shape (1, )."""
    bsz = f_s.shape[0]
    f_s, f_t = f_s.view(bsz, -1), f_t.view(bsz, -1)
    g_s = F.normalize(torch.mm(f_s, torch.t(f_s)))
    g_t = F.normalize(torch.mm(f_t, torch.t(f_t)))
    g_diff = g_t - g_s
    return (g_diff * g_diff).view(-1, 1).sum(0) / (bsz * bsz)


def authors_sp_loss(g_s, g_t):
    """mdistiller ``sp_loss`` (RepDistiller: ``sum(Similarity()(g_s, g_t))``): summed pairs."""
    return sum([authors_similarity_loss(f_s, f_t) for f_s, f_t in zip(g_s, g_t)])


def run(method, s, t):
    method.build(s, t)
    return method(s, t)['loss_sp']


@pytest.mark.parametrize('shapes', [
    [((8, 16, 4, 4), (8, 64, 8, 8))],  # other channels and sizes: SP compares samples only
    [((6, 8, 8, 8), (6, 8, 8, 8)), ((6, 16, 4, 4), (6, 32, 2, 2)), ((6, 10), (6, 7))],
], ids=['one_pair', 'three_pairs_summed'])
def test_loss_and_gradient_equal_the_authors_formulation(shapes):
    torch.manual_seed(0)
    s = [torch.randn(ss, dtype=torch.float64).relu().requires_grad_() for ss, _ in shapes]
    t = [torch.randn(ts, dtype=torch.float64).relu() for _, ts in shapes]
    ours = run(SP(), s if len(s) > 1 else s[0], t if len(t) > 1 else t[0])
    s2 = [x.detach().clone().requires_grad_() for x in s]
    theirs = authors_sp_loss(s2, t)
    assert ours.dtype == torch.float64 and ours.dim() == 0
    torch.testing.assert_close(ours, theirs.squeeze(0), **TOL)
    ours.backward()
    theirs.backward()
    for a, b in zip(s, s2):
        torch.testing.assert_close(a.grad, b.grad, **TOL)


def test_a_hand_computed_case():
    # b = 2, features (1, 0) and (0, 1) for the student: G = I, already row-normalised.
    # Teacher (1, 0) and (1, 0): G = [[1, 1], [1, 1]], rows normalised to 1/sqrt(2) each.
    # ||G~_t - G~_s||^2 = 2 (1/sqrt(2) - 1)^2 + 2 (1/sqrt(2))^2 = 2 (3/2 - sqrt(2)) + 1
    # = 4 - 2 sqrt(2); divided by b^2 = 4: 1 - sqrt(2)/2.
    s = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    t = torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    assert run(SP(), s, t).item() == pytest.approx(1 - 2 ** 0.5 / 2, abs=1e-12)
    # The same similarities: zero loss. A scaled teacher (or student) changes nothing, since
    # each Gram row is normalised.
    assert run(SP(), t, 5.0 * t).item() == pytest.approx(0.0, abs=1e-12)


def test_teacher_gets_no_gradient_and_sum_vs_mean_over_pairs():
    torch.manual_seed(1)
    s = [torch.randn(4, 3, 2, 2, requires_grad=True), torch.randn(4, 5, requires_grad=True)]
    t = [torch.randn(4, 6, 2, 2, requires_grad=True), torch.randn(4, 2, requires_grad=True)]
    total = run(SP(), s, t)
    total.backward()
    assert all(x.grad is None for x in t) and all(x.grad is not None for x in s)
    mean = run(SP(level_reduction='mean'), s, t)
    assert mean.item() == pytest.approx(total.item() / 2, rel=1e-6)


def test_refuses_points_of_other_batch_sizes_or_vectors_without_a_batch():
    with pytest.raises(ValueError, match='same batch size'):
        SP().build(torch.randn(4, 8), torch.randn(2, 8))
    with pytest.raises(ValueError, match=r'\(b, \.\.\.\)'):
        SP().build(torch.randn(4), torch.randn(4))
    with pytest.raises(ValueError, match='loss_name'):
        SP(loss_name='sp')  # a loss must be named loss_*


def test_half_inputs_and_autocast_compute_the_gram_in_float32():
    torch.manual_seed(2)
    # Values whose Gram entries (~ 4096 * 300^2) overflow float16.
    s = (torch.rand(4, 256, 4, 4) * 300).half()
    t = (torch.rand(4, 128, 4, 4) * 300).half()
    ref = run(SP(), s.double(), t.double())
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = run(SP(), s, t)
    assert out.dtype == torch.float32 and torch.isfinite(out)
    assert out.item() == pytest.approx(ref.item(), rel=1e-3, abs=1e-7)


def test_digits_demo_block_builds_and_trains_through_the_distiller(teacher_ckpts):
    cfg = Config.fromfile(f'{DEMO}/digits/sp_resnet34-wide_resnet18-tiny_digits.py')
    d = build(digits_cfg(teacher_ckpts['digits'], blocks=cfg.model.blocks))
    assert type(d.methods['last_stage']).__name__ == 'SP'
    losses = d(*batch(n=8, size=16), mode='loss')
    loss = losses['distill.last_stage.loss_sp']
    assert torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0
               for p in d.student.backbone.layer4.parameters())
