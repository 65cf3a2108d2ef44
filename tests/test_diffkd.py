"""DiffKD: the DDIM maths against its closed form (and diffusers), shapes, gradient paths and
the denoiser's training signal."""
import pytest
import torch
import torch.nn as nn

from mmkd.methods import DDIMSampler, DiffKD, DiffKDDenoiser
from mmkd.methods.diffkd import tokens_to_map


def closed_form_abar(t: int) -> float:
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    return 1.0 if t < 0 else float(torch.prod(1 - betas[:t + 1]))


def built(method, s, t):
    method.build(s, t)
    return method


# --- the sampler ----------------------------------------------------------------------------

def test_inference_timesteps_authors_code_and_paper():
    sampler = DDIMSampler()
    assert sampler.inference_timesteps(5) == [400, 300, 200, 100, 0]  # authors' code
    assert sampler.inference_timesteps(1) == [0]
    assert sampler.inference_timesteps(20)[:2] == [475, 450]
    assert sampler.inference_timesteps(5, start_timestep=500) == [500, 375, 250, 125, 0]
    with pytest.raises(ValueError, match='start_timestep'):
        sampler.inference_timesteps(5, start_timestep=1000)


def test_noising_and_ddim_step_match_closed_form():
    torch.manual_seed(0)
    sampler = DDIMSampler()
    x0, eps, x = torch.randn(3, 4, 2, 2), torch.randn(3, 4, 2, 2), torch.randn(3, 4, 2, 2)
    t = torch.tensor([0, 400, 999])
    noisy = sampler.add_noise(x0, eps, t)
    for i, ti in enumerate(t.tolist()):
        a = closed_form_abar(ti)
        torch.testing.assert_close(noisy[i], a ** 0.5 * x0[i] + (1 - a) ** 0.5 * eps[i])
    for t_now, t_prev in ((400, 300), (100, 0), (0, -1)):
        a, a_prev = closed_form_abar(t_now), closed_form_abar(t_prev)
        x0_hat = (x - (1 - a) ** 0.5 * eps) / a ** 0.5
        expected = a_prev ** 0.5 * x0_hat + (1 - a_prev) ** 0.5 * eps
        torch.testing.assert_close(sampler.step(eps, t_now, x, t_prev), expected)


def test_ddim_with_the_true_noise_walks_the_forward_process_back():
    """eta = 0 DDIM is deterministic: given the noise that made x_t, each step lands exactly on
    the noised sample at the earlier timestep, and the final step returns x0."""
    torch.manual_seed(0)
    sampler = DDIMSampler()
    x0, eps = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    steps = sampler.inference_timesteps(5)
    x = sampler.add_noise(x0, eps, torch.full((2, ), steps[0]))
    for i, t in enumerate(steps):
        t_prev = steps[i + 1] if i + 1 < len(steps) else -1
        x = sampler.step(eps, t, x, t_prev)
        if t_prev >= 0:
            torch.testing.assert_close(x, sampler.add_noise(x0, eps, torch.full((2, ), t_prev)))
    torch.testing.assert_close(x, x0, atol=1e-5, rtol=1e-5)


def test_sampler_matches_diffusers_ddim_scheduler():
    diffusers = pytest.importorskip('diffusers')
    ref = diffusers.DDIMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02,
                                  beta_schedule='linear', clip_sample=False,
                                  set_alpha_to_one=True)
    sampler = DDIMSampler()
    for steps in (1, 5, 10):
        ref.set_timesteps(2 * steps)  # what the authors' pipeline does
        assert ref.timesteps[steps:].tolist() == sampler.inference_timesteps(steps)
    ref.set_timesteps(10)
    torch.manual_seed(0)
    x0, eps, x = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    t = torch.tensor([10, 700])
    torch.testing.assert_close(sampler.add_noise(x0, eps, t), ref.add_noise(x0, eps, t))
    steps = sampler.inference_timesteps(5)
    for i, t in enumerate(steps):
        t_prev = steps[i + 1] if i + 1 < len(steps) else -1
        expected = ref.step(eps, t, x, eta=0.0, use_clipped_model_output=True).prev_sample
        torch.testing.assert_close(sampler.step(eps, t, x, t_prev), expected)


# --- shapes and modules ---------------------------------------------------------------------

def test_feature_maps_with_autoencoder_and_resize():
    torch.manual_seed(0)
    s, t = torch.randn(4, 8, 8, 8), torch.randn(4, 16, 4, 4)
    m = built(DiffKD(use_ae=True, ae_channels=12), s, t)
    level = m.connectors[0]
    assert level.trans.out_channels == 12 and level.ae.encoder[0].out_channels == 12
    refined, gamma = m.denoise(level, level.trans(nn.functional.interpolate(s, size=(4, 4))))
    assert refined.shape == (4, 12, 4, 4) and gamma.shape == (4, )
    losses = m(s, t)
    assert set(losses) == {'loss_kd', 'loss_ddim', 'loss_ae', 'gamma'}
    assert all(v.shape == () and torch.isfinite(v) for v in losses.values())
    # default latent: half the teacher width
    assert built(DiffKD(use_ae=True), s, t).connectors[0].trans.out_channels == 8


def test_vectors_use_the_mlp_denoiser_and_kl():
    torch.manual_seed(0)
    s, t = torch.randn(6, 10), torch.randn(6, 10)
    m = built(DiffKD(distance=dict(type='kl', tau=1.0)), s, t)
    level = m.connectors[0]
    assert not any(isinstance(mod, nn.Conv2d) and mod.kernel_size != (1, 1)
                   for mod in level.modules())  # kernel_size 1 everywhere: the MLP variant
    refined, _ = m.denoise(level, level.trans(s[:, :, None, None]))
    assert refined.shape == (6, 10, 1, 1)
    losses = m(s, t)
    assert set(losses) == {'loss_kd', 'loss_ddim', 'gamma'} and losses['loss_kd'] >= 0
    with pytest.raises(ValueError, match=r'maps, \(N, L, C\) tokens or \(N, C\) vectors, '
                                         r'got student shape \(2, 5, 8, 1, 1\)'):
        built(DiffKD(), torch.randn(2, 5, 8, 1, 1), torch.randn(2, 5, 8, 1, 1))


def test_fpn_tuples_per_level_or_shared():
    s = (torch.randn(2, 8, 8, 8), torch.randn(2, 8, 4, 4), torch.randn(2, 8, 2, 2))
    t = (torch.randn(2, 16, 8, 8), torch.randn(2, 16, 4, 4), torch.randn(2, 16, 2, 2))
    per_level = built(DiffKD(), s, t)
    shared = built(DiffKD(share_levels=True), s, t)
    assert len(per_level.connectors) == 3 and len(shared.connectors) == 1
    for m in (per_level, shared):
        losses = m(s, t)
        assert set(losses) == {'loss_kd', 'loss_ddim', 'gamma'}
        assert 0 < losses['gamma'] < 1  # a mean over levels, not a sum


def test_loss_weights_scale_terms_and_unknown_terms_are_rejected():
    s, t = torch.randn(2, 4, 4, 4), torch.randn(2, 8, 4, 4)
    plain, weighted = DiffKD(use_ae=True), DiffKD(use_ae=True, loss_weights=dict(kd=2, ae=0.5))
    plain.build(s, t)
    weighted.build(s, t)
    weighted.load_state_dict(plain.state_dict())
    torch.manual_seed(1)
    a = plain(s, t)
    torch.manual_seed(1)
    b = weighted(s, t)
    torch.testing.assert_close(b['loss_kd'], 2 * a['loss_kd'])
    torch.testing.assert_close(b['loss_ae'], 0.5 * a['loss_ae'])
    torch.testing.assert_close(b['loss_ddim'], a['loss_ddim'])
    with pytest.raises(ValueError, match="valid terms: \\['kd', 'ddim', 'ae'\\]"):
        DiffKD(loss_weights=dict(rec=1.0))
    with pytest.raises(ValueError, match='valid distances'):
        DiffKD(distance='cosine')


def test_gamma_stays_in_open_unit_interval():
    torch.manual_seed(0)
    s, t = torch.randn(8, 6, 4, 4), torch.randn(8, 6, 4, 4)
    m = built(DiffKD(), s, t)
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    for scale in (1e-3, 1.0, 30.0):
        gamma = m.connectors[0].noise_adapter(m.connectors[0].trans(scale * s))
        assert ((gamma > 0) & (gamma < 1)).all()
    for _ in range(5):  # and after optimisation steps on the distillation loss
        loss = m(s, t)['loss_kd']
        opt.zero_grad()
        loss.backward()
        opt.step()
    gamma = m.connectors[0].noise_adapter(m.connectors[0].trans(s))
    assert ((gamma > 0) & (gamma < 1)).all()


# --- token inputs (ViT / Swin) --------------------------------------------------------------

def as_tokens(x, extra=0, seed=0):
    """(N, C, H, W) -> (N, extra + H*W, C): row-major patch tokens after ``extra`` random
    leading (class-like) tokens, written independently of the method's reshape."""
    n, c, h, w = x.shape
    tokens = torch.stack([x[:, :, i, j] for i in range(h) for j in range(w)], dim=1)
    g = torch.Generator().manual_seed(seed)
    return torch.cat([torch.randn(n, extra, c, generator=g), tokens], dim=1)


def losses_with_seed(m, s, t, seed=3):
    torch.manual_seed(seed)  # the same noise and diffusion timesteps for every call
    return m(s, t)


def test_tokens_give_the_loss_of_the_maps_reshaped_by_hand():
    torch.manual_seed(0)
    s_map, t_map = torch.randn(4, 6, 4, 4), torch.randn(4, 10, 8, 8)
    # A ViT-like student with a class token (4x4 grid), a Swin-like teacher (8x8, no extras).
    s_tok, t_tok = as_tokens(s_map, extra=1), as_tokens(t_map)
    assert s_tok.shape == (4, 17, 6) and t_tok.shape == (4, 64, 10)
    m = DiffKD(use_ae=True, skip_tokens=dict(student=1))
    m.build(s_tok, t_tok)
    for s, t in ((s_map, t_map), (s_tok, t_map), (s_map, t_tok)):  # maps and tokens mix too
        expected = losses_with_seed(m, s_map, t_map)
        got = losses_with_seed(m, s, t)
        assert set(got) == {'loss_kd', 'loss_ddim', 'loss_ae', 'gamma'}
        for key in expected:
            torch.testing.assert_close(got[key], expected[key], rtol=0, atol=0)
    torch.testing.assert_close(tokens_to_map(s_tok, 1), s_map, rtol=0, atol=0)
    # A non-square grid given explicitly: 2 x 4 tokens.
    s_rect, t_rect = torch.randn(3, 5, 2, 4), torch.randn(3, 7, 2, 4)
    rect = built(DiffKD(token_shape=(2, 4)), as_tokens(s_rect), as_tokens(t_rect))
    torch.testing.assert_close(losses_with_seed(rect, as_tokens(s_rect), as_tokens(t_rect)),
                               losses_with_seed(rect, s_rect, t_rect), rtol=0, atol=0)


def test_class_token_is_dropped():
    torch.manual_seed(0)
    s_map, t_map = torch.randn(4, 6, 3, 3), torch.randn(4, 8, 3, 3)
    # DeiT-like: class and distillation tokens on both sides, skip_tokens as one int.
    s_a, t_a = as_tokens(s_map, extra=2, seed=1), as_tokens(t_map, extra=2, seed=2)
    s_b, t_b = as_tokens(s_map, extra=2, seed=5), as_tokens(t_map, extra=2, seed=6)
    assert not torch.equal(s_a, s_b) and not torch.equal(t_a, t_b)
    m = built(DiffKD(skip_tokens=2), s_a, t_a)
    a, b = losses_with_seed(m, s_a, t_a), losses_with_seed(m, s_b, t_b)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    # Counted as patch tokens instead, 11 tokens are no grid at all.
    with pytest.raises(ValueError, match='not a square grid'):
        built(DiffKD(), s_a, t_a)


def test_non_square_tokens_fail_naming_the_shapes():
    s, t = torch.randn(2, 12, 6), torch.randn(2, 17, 8)  # 12 student tokens: 3x4, not square
    with pytest.raises(ValueError) as err:
        built(DiffKD(), s, t)
    msg = str(err.value)
    for word in ('student tokens', '(2, 12, 6)', '12 tokens', 'skip_tokens=0',
                 'not a square grid', 'token_shape=(h, w), h * w = 12'):
        assert word in msg, (word, msg)
    with pytest.raises(ValueError, match=r'teacher tokens of shape \(2, 17, 8\) leave 16 '
                                         r'tokens after skip_tokens=1, but '
                                         r'token_shape=\(3, 4\) holds 12'):
        built(DiffKD(skip_tokens=dict(teacher=1), token_shape=dict(student=(3, 4),
                                                                   teacher=(3, 4))), s, t)
    # The per-side grid works (teacher 16 tokens after its class token: square 4x4).
    m = built(DiffKD(skip_tokens=dict(teacher=1), token_shape=dict(student=(3, 4))), s, t)
    assert torch.isfinite(m(s, t)['loss_kd'])
    with pytest.raises(ValueError, match=r"valid keys: \['student', 'teacher'\]"):
        DiffKD(skip_tokens=dict(cls=1))
    with pytest.raises(ValueError, match='skip_tokens \\(student\\) must be an int >= 0'):
        DiffKD(skip_tokens=-1)
    with pytest.raises(ValueError, match='token_shape \\(teacher\\) must be None or'):
        DiffKD(token_shape=dict(teacher=(4, 0)))
    with pytest.raises(ValueError, match='must leave at least one'):
        built(DiffKD(skip_tokens=12), s, torch.randn(2, 16, 8))


def test_distance_loss_reaches_the_student_tokens_but_not_the_class_token():
    torch.manual_seed(0)
    tokens = torch.randn(4, 1 + 9, 6, requires_grad=True)
    teacher = torch.randn(4, 9, 8)
    m = built(DiffKD(skip_tokens=dict(student=1)), tokens, teacher)
    m(tokens, teacher)['loss_kd'].backward()
    assert (tokens.grad[:, 1:].abs().sum(dim=2) > 0).all()  # every patch token gets a gradient
    assert torch.equal(tokens.grad[:, 0], torch.zeros(4, 6))  # the dropped class token none


# --- gradient paths -------------------------------------------------------------------------

def grads(module):
    return [p.grad for p in module.parameters()]


def has_grad(module):
    return any(g is not None and g.abs().sum() > 0 for g in grads(module))


def test_distance_loss_reaches_student_through_the_chain_but_not_the_autoencoder():
    torch.manual_seed(0)
    student = nn.Conv2d(3, 8, 3, padding=1)
    image, t = torch.randn(4, 3, 4, 4), torch.randn(4, 16, 4, 4)
    m = built(DiffKD(use_ae=True, ae_channels=8), student(image), t)
    level = m.connectors[0]
    m(student(image), t)['loss_kd'].backward()
    assert has_grad(student)
    for part in (level.trans, level.noise_adapter, level.denoiser, level.proj):
        assert has_grad(part), part
    assert not has_grad(level.ae)  # the latent is detached
    for p in list(m.parameters()) + list(student.parameters()):
        p.grad = None
    m(student(image), t)['loss_ae'].backward()
    assert has_grad(level.ae)
    assert not any(has_grad(part) for part in (student, level.trans, level.denoiser))
    for p in list(m.parameters()) + list(student.parameters()):
        p.grad = None
    m(student(image), t)['loss_ddim'].backward()  # trains the denoiser on the teacher only
    assert has_grad(level.denoiser) and not has_grad(student) and not has_grad(level.ae)


def test_training_the_denoiser_on_fixed_teacher_features_lowers_the_diffusion_loss():
    torch.manual_seed(0)
    # Structured "teacher features": low-rank maps, so noise is predictable from x_t.
    basis = torch.randn(3, 8, 4, 4)
    teacher = torch.einsum('nk,kchw->nchw', torch.randn(32, 3), basis)
    m = built(DiffKD(), torch.randn(32, 4, 4, 4), teacher)
    level = m.connectors[0]

    def eval_loss():
        gen_state = torch.get_rng_state()
        torch.manual_seed(123)  # the same (t, noise) draws before and after training
        value = sum(float(m.diffusion_loss(level, teacher)) for _ in range(10)) / 10
        torch.set_rng_state(gen_state)
        return value

    before = eval_loss()
    opt = torch.optim.Adam(level.denoiser.parameters(), lr=3e-3)
    for _ in range(150):
        loss = m.diffusion_loss(level, teacher)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = eval_loss()
    assert after < 0.6 * before, (before, after)


def test_denoiser_accepts_scalar_or_per_sample_timesteps():
    d = DiffKDDenoiser(8, kernel_size=3)
    x = torch.randn(3, 8, 5, 5)
    assert d(x, torch.tensor(400)).shape == x.shape
    assert d(x, torch.tensor([0, 500, 999])).shape == x.shape
    with pytest.raises(ValueError, match='kernel_size'):
        DiffKDDenoiser(8, kernel_size=5)


def test_bf16_autocast_keeps_losses_finite():
    torch.manual_seed(0)
    s, t = torch.randn(4, 8, 4, 4), torch.randn(4, 16, 4, 4)
    m = built(DiffKD(use_ae=True), s, t)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        losses = m(s, t)
    total = sum(v for k, v in losses.items() if 'loss' in k)
    assert total.dtype == torch.float32 and torch.isfinite(total)
    total.backward()
    assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)
