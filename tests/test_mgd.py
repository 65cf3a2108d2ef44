"""MGD: the mask's ratio and layout, the loss against the authors' formula, presets, shapes."""
import pytest
import torch

from mmkd.methods import MGD, mgd_mask
from mmkd.methods.mgd import PRESETS


def test_mask_ratio_and_layout():
    torch.manual_seed(0)
    spatial = mgd_mask((64, 8, 32, 32), 'spatial', 0.65, 'cpu')
    assert spatial.shape == (64, 1, 32, 32) and set(spatial.unique().tolist()) == {0.0, 1.0}
    assert 1 - spatial.mean().item() == pytest.approx(0.65, abs=0.01)  # share masked
    channel = mgd_mask((512, 256, 7, 7), 'channel', 0.15, 'cpu')
    assert channel.shape == (512, 256, 1, 1)
    assert 1 - channel.mean().item() == pytest.approx(0.15, abs=0.01)
    assert mgd_mask((2, 3, 4, 4), 'spatial', 0.0, 'cpu').all()  # ratio 0 masks nothing


@pytest.mark.parametrize('preset', list(PRESETS))
def test_loss_is_alpha_sum_of_squares_over_n_of_the_generated_masked_student(preset):
    torch.manual_seed(0)
    s, t = torch.randn(3, 4, 5, 6), torch.randn(3, 8, 5, 6)
    method = MGD(preset=preset)
    method.build(s, t)
    gen = method.connectors[0]
    assert gen.align is not None and gen.align.in_channels == 4  # channels differ: aligned
    torch.manual_seed(7)
    loss = method(s, t)['loss_mgd']
    # the same draw, by hand: authors' formula
    torch.manual_seed(7)
    aligned = gen.align(s)
    n, c, h, w = aligned.shape
    cfg = PRESETS[preset]
    if cfg['mask'] == 'spatial':
        m = torch.where(torch.rand(n, 1, h, w) > 1 - cfg['ratio'], 0., 1.)
    else:
        m = torch.where(torch.rand(n, c, 1, 1) < cfg['ratio'], 0., 1.)
    expected = cfg['alpha'] * ((gen.generation(aligned * m) - t) ** 2).sum() / n
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    loss.backward()
    assert gen.generation[0].weight.grad.abs().sum() > 0


def test_options_equal_channels_vectors_resize_and_errors():
    s = torch.randn(2, 8, 4, 4)
    same = MGD(preset='segmentation')
    same.build(s, s)
    assert same.connectors[0].align is None  # as the authors: no align when channels match
    assert MGD(align='always').build_level(s, s).align is not None
    ov = MGD(preset='detection', mask='channel', ratio=0.3, alpha=1.0)
    assert (ov.mask, ov.ratio, ov.alpha) == ('channel', 0.3, 1.0)

    vec = MGD(preset='classification')
    vec.build(torch.randn(2, 6), torch.randn(2, 10))
    assert torch.isfinite(vec(torch.randn(2, 6), torch.randn(2, 10))['loss_mgd'])

    # the adaptive layer: a smaller student map is resized to the teacher's
    small, big = torch.randn(2, 4, 4, 4), torch.randn(2, 4, 8, 8)
    resized = MGD()
    resized.build(small, big)
    assert torch.isfinite(resized(small, big)['loss_mgd'])
    strict = MGD(resize=None)
    strict.build(small, big)
    with pytest.raises(ValueError, match='differ in size'):
        strict(small, big)
    with pytest.raises(ValueError, match='featmap'):
        MGD().build(torch.randn(2, 5, 8), torch.randn(2, 5, 8))
    with pytest.raises(ValueError, match='preset'):
        MGD(preset='iqa')
    with pytest.raises(ValueError, match='ratio'):
        MGD(ratio=1.0)
    with pytest.raises(ValueError, match="align='none'"):
        MGD(align='none').build(torch.randn(1, 2, 3, 3), torch.randn(1, 4, 3, 3))


def test_levels_get_their_own_generator():
    levels_s = tuple(torch.randn(2, 4, 8 // 2 ** i, 8 // 2 ** i) for i in range(3))
    levels_t = tuple(torch.randn(2, 4, 8 // 2 ** i, 8 // 2 ** i) for i in range(3))
    method = MGD()
    method.build(levels_s, levels_t)
    assert len(method.connectors) == 3
    assert method.connectors[0].generation[0].weight is not \
        method.connectors[1].generation[0].weight
    assert method(levels_s, levels_t)['loss_mgd'].shape == ()
