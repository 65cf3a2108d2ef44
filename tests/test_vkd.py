"""VkD: orthogonality of the projector, the normalisations' statistics, the loss formula."""
import pytest
import torch

from mmkd.methods import OrthogonalProjector, VkD
from mmkd.methods.vkd import standardize_per_channel, standardize_per_sample, whiten


def gram_is_identity(w: torch.Tensor, atol=1e-5):
    """W^T W = I for a tall (or square) weight, W W^T = I for a wide one."""
    gram = w.t() @ w if w.shape[0] >= w.shape[1] else w @ w.t()
    torch.testing.assert_close(gram, torch.eye(gram.shape[0]), atol=atol, rtol=0)


def built(method, s, t):
    method.build(s, t)
    return method


@pytest.mark.parametrize('c_s,c_t', [(8, 16), (16, 8), (12, 12)])
def test_projector_stays_orthogonal_after_optimiser_steps(c_s, c_t):
    torch.manual_seed(0)
    s, t = torch.randn(32, c_s), torch.randn(32, c_t)
    m = built(VkD(normalize='none', affine=True), s, t)
    proj = m.connectors[0]
    assert proj.weight.shape == (c_t, c_s)
    assert all(p is not proj.weight for p in m.parameters())  # only the parametrisation is trained
    opt = torch.optim.SGD(m.parameters(), lr=0.5, momentum=0.9)
    before = proj.weight.detach().clone()
    for _ in range(20):
        loss = m(s, t)['loss_vkd']
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert not torch.allclose(before, proj.weight)  # it moved...
    gram_is_identity(proj.weight.detach())  # ...and stayed orthogonal
    assert not torch.allclose(proj.scale.detach(), torch.ones(c_t))  # the affine part trains too


@pytest.mark.parametrize('c_s,c_t', [(8, 16), (16, 8), (12, 12)])
def test_weight_decay_never_zeroes_the_projector(c_s, c_t, monkeypatch):
    """AdamW's weight decay on the projector's parameter: the weight stays orthogonal and the
    student keeps getting a gradient. Without the diagonal kept at +-1, torch's householder map
    (C_s != C_t) truncates the decayed diagonal to 0 and the weight becomes zero at once (the
    dead VkD block the gradient shares showed, docs/analysis.md); the square case uses the
    matrix exponential, which decay cannot break."""
    from mmkd.methods.vkd import OrthogonalProjector

    def train(steps=3):
        torch.manual_seed(0)
        s, t = torch.randn(32, c_s, requires_grad=True), torch.randn(32, c_t)
        m = built(VkD(normalize='sample'), s, t)
        opt = torch.optim.AdamW(m.parameters(), lr=1e-3, weight_decay=0.05)
        for _ in range(steps):
            loss = m(s, t)['loss_vkd']
            opt.zero_grad()
            loss.backward()
            opt.step()
        grad, = torch.autograd.grad(m(s, t)['loss_vkd'], s)
        return m.connectors[0].weight.detach(), grad

    weight, grad = train()
    gram_is_identity(weight)
    assert grad.norm() > 1e-3
    monkeypatch.setattr(OrthogonalProjector, '_keep_unit_diagonal', lambda self: None)
    weight, grad = train()
    if c_s != c_t:
        assert weight.abs().max() == 0 and grad.norm() == 0
    else:
        gram_is_identity(weight)


def test_narrow_student_projection_preserves_inner_products():
    torch.manual_seed(0)
    proj = OrthogonalProjector(6, 20)
    x, y = torch.randn(10, 6), torch.randn(10, 6)
    torch.testing.assert_close(proj(x) @ proj(y).t(), x @ y.t(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(proj(x).norm(dim=1), x.norm(dim=1), atol=1e-5, rtol=1e-5)
    assert not any(n.endswith('bias') for n, _ in proj.named_parameters())  # bias-free


def test_normalisations_give_the_promised_statistics():
    torch.manual_seed(0)
    x = 3 + 2 * torch.randn(512, 6) @ torch.randn(6, 6)  # correlated, offset, scaled
    per_sample = standardize_per_sample(x)
    torch.testing.assert_close(per_sample.mean(1), torch.zeros(512), atol=1e-5, rtol=0)
    torch.testing.assert_close(per_sample.var(1, unbiased=False), torch.ones(512), atol=1e-3,
                               rtol=0)
    per_channel = standardize_per_channel(x)
    torch.testing.assert_close(per_channel.mean(0), torch.zeros(6), atol=1e-5, rtol=0)
    torch.testing.assert_close(per_channel.var(0, unbiased=False), torch.ones(6), atol=1e-4,
                               rtol=0)
    white = whiten(x, eps=1e-8)
    cov = white.t() @ white / (len(white) - 1)
    torch.testing.assert_close(white.mean(0), torch.zeros(6), atol=1e-5, rtol=0)
    torch.testing.assert_close(cov, torch.eye(6), atol=1e-4, rtol=0)
    # Fewer tokens than channels: the covariance is singular, the output stays finite.
    small = whiten(torch.randn(3, 16))
    assert torch.isfinite(small).all() and small.shape == (3, 16)
    assert torch.isfinite(whiten(torch.ones(4, 5))).all()  # zero variance


def smooth_l1(d, beta):
    return torch.where(d.abs() < beta, 0.5 * d ** 2 / beta, d.abs() - 0.5 * beta).mean()


def test_loss_equals_formula_on_hand_made_tensors():
    s = torch.tensor([[1.0, -2.0], [0.5, 0.0], [3.0, 1.0]])
    t = torch.tensor([[2.0, 0.0, 1.0], [-1.0, 1.0, 4.0], [0.0, 0.0, 3.0]])
    for normalize, beta in (('sample', 1.0), ('batch', 0.5), ('none', 2.0)):
        m = built(VkD(normalize=normalize, beta=beta), s, t)
        w = m.connectors[0].weight.detach()
        projected = s @ w.t()
        if normalize == 'sample':
            target = (t - t.mean(1, keepdim=True)) / (t.var(1, unbiased=False, keepdim=True)
                                                       + 1e-5).sqrt()
        elif normalize == 'batch':
            norm = lambda z: (z - z.mean(0)) / (z.var(0, unbiased=False) + 1e-5).sqrt()
            target, projected = norm(t), norm(projected)
        else:
            target = t
        torch.testing.assert_close(m(s, t)['loss_vkd'], smooth_l1(projected - target, beta))
    l2 = built(VkD(normalize='none', distance='l2'), s, t)
    w = l2.connectors[0].weight.detach()
    torch.testing.assert_close(l2(s, t)['loss_vkd'], ((s @ w.t() - t) ** 2).mean())


def test_vectors_tokens_maps_and_fpn_levels():
    torch.manual_seed(0)
    for s, t in (((4, 8), (4, 16)), ((2, 5, 8), (2, 5, 16)), ((2, 8, 6, 6), (2, 16, 3, 3))):
        s, t = torch.randn(*s), torch.randn(*t)
        m = built(VkD(normalize='batch'), s, t)
        assert m.connectors[0].weight.shape == (16, 8)
        assert m(s, t)['loss_vkd'].shape == ()
    # pooled: student tokens averaged, teacher map averaged over space (classification)
    pooled = built(VkD(pool=True), torch.randn(2, 7, 8), torch.randn(2, 16, 4, 4))
    assert torch.isfinite(pooled(torch.randn(2, 7, 8), torch.randn(2, 16, 4, 4))['loss_vkd'])
    levels_s = (torch.randn(2, 8, 8, 8), torch.randn(2, 8, 4, 4))
    levels_t = (torch.randn(2, 16, 8, 8), torch.randn(2, 16, 4, 4))
    assert len(built(VkD(normalize='batch'), levels_s, levels_t).connectors) == 2
    assert len(built(VkD(normalize='batch', share_levels=True), levels_s,
                     levels_t).connectors) == 1
    with pytest.raises(ValueError, match='token'):
        built(VkD(), torch.randn(2, 5, 8), torch.randn(2, 6, 8))(torch.randn(2, 5, 8),
                                                                 torch.randn(2, 6, 8))
    with pytest.raises(ValueError, match="'sample', 'batch', 'whiten', 'none'"):
        VkD(normalize='layer')


def test_bf16_autocast_keeps_the_projector_orthogonal():
    torch.manual_seed(0)
    s, t = torch.randn(16, 8), torch.randn(16, 12)
    m = built(VkD(), s, t)
    opt = torch.optim.SGD(m.parameters(), lr=0.5)
    for _ in range(5):
        with torch.autocast('cpu', dtype=torch.bfloat16):
            loss = m(s, t)['loss_vkd']
        assert loss.dtype == torch.float32 and torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
    weight = m.connectors[0].weight.detach()
    assert weight.dtype == torch.float32
    gram_is_identity(weight)


def test_timm_teacher_checkpoint_loads_through_revise_keys(tmp_path):
    """The VkD ImageNet teacher: DeiT's RegNetY-160 weights are in timm's layout under 'model';
    revise_keys maps them onto the mmpretrain classifier wrapping timm's backbone."""
    timm = pytest.importorskip('timm')
    from mmengine.config import Config

    from conftest import REPO
    from mmkd.distillers import (build_model_in_scope, load_checkpoint_strict,
                                 load_model_config)
    cfg = Config.fromfile(f'{REPO}/configs/vkd/vkd_deit-tiny_regnety-160_in1k.py')
    torch.manual_seed(0)
    source = timm.create_model('regnety_160', pretrained=False)
    path = str(tmp_path / 'regnety_160.pth')
    torch.save(dict(model=source.state_dict()), path)
    model_cfg, scope = load_model_config(cfg.model.teacher.config)
    teacher = build_model_in_scope(model_cfg, scope)
    load_checkpoint_strict(teacher, path, revise_keys=cfg.model.teacher.revise_keys)
    teacher.eval()
    source.eval()
    image = torch.randn(1, 3, 64, 64)
    with torch.no_grad():  # same weights -> the same logits as timm's own model
        torch.testing.assert_close(teacher(image, mode='tensor'), source(image))
    with pytest.raises(RuntimeError, match='unexpected keys'):
        load_checkpoint_strict(teacher, path)  # without the revision nothing matches


def test_pooling_skips_the_class_token():
    torch.manual_seed(0)
    tokens, teacher = torch.randn(4, 5, 8), torch.randn(4, 16)
    m = built(VkD(pool=True, skip_tokens=1, normalize='none'), tokens, teacher)
    changed = tokens.clone()
    changed[:, 0] += 100.0  # the class token does not enter the loss
    torch.testing.assert_close(m(changed, teacher)['loss_vkd'], m(tokens, teacher)['loss_vkd'])
    w = m.connectors[0].weight.detach()
    expected = smooth_l1(tokens[:, 1:].mean(1) @ w.t() - teacher, 1.0)
    torch.testing.assert_close(m(tokens, teacher)['loss_vkd'], expected)
