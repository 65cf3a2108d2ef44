"""AFD and RTK: attention normalisation, limiting cases, key selection; CIFAR backbones."""
import pytest
import torch
import torch.nn.functional as F

from mmkd.methods import AFD, RTK, spatial_attention_map


def maps(n, channels_sizes, seed=0):
    torch.manual_seed(seed)
    return [torch.randn(n, c, s, s) for c, s in channels_sizes]


def built(method, s, t):
    method.build(s, t)
    return method


STUDENT = [(8, 8), (16, 4), (16, 4)]
TEACHER = [(12, 8), (24, 4), (24, 4), (32, 2)]


def test_attention_rows_sum_to_one():
    s, t = maps(4, STUDENT), maps(4, TEACHER, seed=1)
    afd = built(AFD(qk_dim=16), s, t)
    attn = afd.attention(s, t)
    assert attn.shape == (4, 4, 3)  # teacher queries over student layers
    torch.testing.assert_close(attn.sum(2), torch.ones(4, 4))
    for rtk in (RTK(qk_dim=16, selection='all'), RTK(qk_dim=16, num_keys=2),
                RTK(qk_dim=16, selection='threshold', threshold=0.3)):
        attn = built(rtk, s, t).attention(s, t)
        assert attn.shape == (4, 3, 4)  # student queries over teacher keys
        torch.testing.assert_close(attn.sum(2), torch.ones(4, 3))


def test_afd_with_one_layer_each_is_attention_map_matching():
    s, t = maps(3, [(8, 8)]), maps(3, [(16, 4)], seed=1)
    afd = built(AFD(qk_dim=8), s, t)
    # One student layer: the softmax is 1, the loss is attention transfer with the student
    # map average-pooled to the teacher's 4x4.
    a_s = s[0].pow(2).mean(1, keepdim=True)
    a_s = F.normalize(F.avg_pool2d(a_s, 2).flatten(1), dim=1)
    a_t = F.normalize(t[0].pow(2).mean(1).flatten(1), dim=1)
    expected = (a_s - a_t).pow(2).mean(1).mean()
    torch.testing.assert_close(afd(s, t)['loss_afd'], expected)
    torch.testing.assert_close(spatial_attention_map(s[0], (4, 4)), a_s)


def test_afd_loss_is_attention_weighted_sum_and_trains_its_projections():
    s, t = maps(4, STUDENT), maps(4, TEACHER, seed=1)
    afd = built(AFD(qk_dim=16), s, t)
    attn, dist = afd.attention(s, t), afd.pair_distances(s, t)
    manual = sum(attn[:, i, j] * dist[:, i, j] for i in range(4) for j in range(3)).mean()
    torch.testing.assert_close(afd(s, t)['loss_afd'], manual)
    afd(s, t)['loss_afd'].backward()
    assert afd.query_pos.grad.abs().sum() > 0 and afd.bilinear[0].weight.grad.abs().sum() > 0


def test_rtk_keep_all_equals_plain_attention_matching():
    s, t = maps(4, STUDENT), maps(4, TEACHER, seed=1)
    rtk = built(RTK(qk_dim=16, selection='all'), s, t)
    attn = rtk.attention_logits(s, t).softmax(2)  # no selection
    dist = rtk.pair_distances(s, t)  # N, T, S
    manual = sum(attn[:, j, i] * dist[:, i, j] for i in range(4) for j in range(3)).mean()
    manual = manual * 4 / 3  # default normalize='teacher_layers': T/S, T = 4, S = 3
    out = rtk(s, t)
    torch.testing.assert_close(out['loss_rtk'], manual)
    assert out['kept_keys'] == 4


def zero_mean_spatial_noise(x, seed):
    """Changes the map but not its global average (so not the layer's key)."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(x.shape, generator=g)
    return x + 5 * (noise - noise.mean(dim=(2, 3), keepdim=True))


def test_rtk_topk_ignores_dropped_teacher_features():
    s, t = maps(1, STUDENT), maps(1, TEACHER, seed=1)
    s, t = [x.repeat(2, 1, 1, 1) + 0.1 * torch.randn_like(x.repeat(2, 1, 1, 1)) for x in s], \
        [x.repeat(2, 1, 1, 1) + 0.1 * torch.randn_like(x.repeat(2, 1, 1, 1)) for x in t]
    rtk = built(RTK(qk_dim=16, num_keys=2), s, t)
    rtk.eval()  # fixed BN statistics: the keys depend only on each layer's own features
    attn = rtk.attention(s, t)
    assert ((attn > 0).sum(2) == 2).all()  # k = 2 of 4 keys per student query
    used = (attn > 0).any(dim=(0, 1))
    dropped = [i for i in range(4) if not used[i]]
    kept = [i for i in range(4) if used[i]]
    assert dropped, 'with 3 queries x 2 keys some teacher layer should be unused'
    base = rtk(s, t)['loss_rtk']
    for i in dropped:
        t2 = list(t)
        t2[i] = zero_mean_spatial_noise(t[i], i)
        torch.testing.assert_close(rtk(s, t2)['loss_rtk'], base)
    t2 = list(t)
    t2[kept[0]] = zero_mean_spatial_noise(t[kept[0]], 0)
    assert not torch.allclose(rtk(s, t2)['loss_rtk'], base)  # a kept key does matter


def test_rtk_threshold_keeps_the_best_key_and_validates_options():
    s, t = maps(4, STUDENT), maps(4, TEACHER, seed=1)
    rtk = built(RTK(qk_dim=16, selection='threshold', threshold=0.99), s, t)
    attn = rtk.attention(s, t)
    assert ((attn > 0).sum(2) == 1).all()  # nothing reaches 0.99: only the best key
    with pytest.raises(ValueError, match="'topk', 'threshold', 'all'"):
        RTK(selection='cluster')
    with pytest.raises(ValueError, match='maps'):
        built(AFD(), [torch.randn(2, 8)], [torch.randn(2, 8)])


# --- RTK's loss scale: T/S puts it on AFD's ------------------------------------------------

def uniform_attention(method):
    """Zero the query BN's affine and the positional embeddings: every logit is exactly 0."""
    with torch.no_grad():
        for layer in method.query_layers:
            layer[1].weight.zero_()
            layer[1].bias.zero_()
        method.query_pos.zero_()
        method.key_pos.zero_()
    return method


def test_rtk_with_uniform_attention_and_all_keys_equals_afd():
    s, t = maps(4, STUDENT), maps(4, TEACHER, seed=1)  # S = 3, T = 4
    afd = uniform_attention(built(AFD(qk_dim=16), s, t))
    rtk = uniform_attention(built(RTK(qk_dim=16, selection='all'), s, t))
    torch.testing.assert_close(afd.attention(s, t), torch.full((4, 4, 3), 1 / 3))
    torch.testing.assert_close(rtk.attention(s, t), torch.full((4, 3, 4), 1 / 4))
    dist = afd.pair_distances(s, t)  # N, T, S
    # Both are the plain mean over student layers of the distances summed over teacher layers.
    expected = (dist.sum(dim=(1, 2)) / 3).mean()
    torch.testing.assert_close(afd(s, t)['loss_afd'], expected)
    torch.testing.assert_close(rtk(s, t)['loss_rtk'], expected)
    torch.testing.assert_close(rtk(s, t)['loss_rtk'], afd(s, t)['loss_afd'])


def test_rtk_raw_sum_is_s_over_t_of_afd_and_option_is_validated():
    s, t = maps(4, STUDENT), maps(4, TEACHER, seed=1)
    afd = uniform_attention(built(AFD(qk_dim=16), s, t))
    raw = uniform_attention(built(RTK(qk_dim=16, selection='all', normalize='none'), s, t))
    torch.testing.assert_close(raw(s, t)['loss_rtk'], afd(s, t)['loss_afd'] * 3 / 4)
    # Any selection: the default scales the raw sum by exactly T/S (here 4/3).
    for selection in ('topk', 'threshold'):
        scaled = built(RTK(qk_dim=16, selection=selection), s, t)
        raw = RTK(qk_dim=16, selection=selection, normalize='none')
        raw.build(s, t)
        raw.load_state_dict(scaled.state_dict())
        torch.testing.assert_close(scaled(s, t)['loss_rtk'], raw(s, t)['loss_rtk'] * 4 / 3)
    with pytest.raises(ValueError, match="normalize must be one of \\['teacher_layers', "
                                         "'none'\\], got 'student_layers'"):
        RTK(normalize='student_layers')


# Block shapes of WRN-16-2 (S = 6) and WRN-40-2 (T = 18) at half CIFAR resolution.
WRN_16_2 = [(32, 16)] * 2 + [(64, 8)] * 2 + [(128, 4)] * 2
WRN_40_2 = [(32, 16)] * 6 + [(64, 8)] * 6 + [(128, 4)] * 6


def test_rtk_default_is_on_afds_scale_for_s6_t18():
    """Default parameters, random features, independently initialised AFD and RTK.

    The attention is not uniform at initialisation (logits of order 1), so the ratio scatters
    around 1. Measured with this set-up over 40 seeds: ratio 0.88-1.13, mean 1.01, std 0.05
    (untrained WRN-40-2/16-2 themselves, N = 16: 0.98-1.07). The raw sum gives S/T = 1/3.
    Bands: each draw within [0.75, 1.33] (beyond the measured extremes), and the mean of these
    8 draws (0.96) within 1 +- 0.1, a half-width of 5.5 standard errors (0.018) of such a mean.
    """
    ratios = []
    for seed in range(8):
        s, t = maps(4, WRN_16_2, seed=2 * seed), maps(4, WRN_40_2, seed=2 * seed + 1)
        torch.manual_seed(seed)
        afd, rtk = built(AFD(), s, t), built(RTK(), s, t)
        with torch.no_grad():
            ratios.append(float(rtk(s, t)['loss_rtk'] / afd(s, t)['loss_afd']))
    assert all(0.75 < r < 1.33 for r in ratios), ratios
    assert 0.9 < sum(ratios) / len(ratios) < 1.1, ratios


@pytest.mark.parametrize('name,backbone,channels,params', [
    ('resnet20', dict(type='CifarResNet', depth=20), 64, 0.28),
    ('resnet32', dict(type='CifarResNet', depth=32), 64, 0.47),
    ('resnet56', dict(type='CifarResNet', depth=56), 64, 0.86),
    ('resnet110', dict(type='CifarResNet', depth=110), 64, 1.74),
    ('resnet8x4', dict(type='CifarResNet', depth=8, widths=(32, 64, 128, 256)), 256, 1.23),
    ('resnet32x4', dict(type='CifarResNet', depth=32, widths=(32, 64, 128, 256)), 256, 7.43),
    ('wrn-16-2', dict(type='CifarWideResNet', depth=16, widen_factor=2), 128, 0.70),
    ('wrn-40-1', dict(type='CifarWideResNet', depth=40, widen_factor=1), 64, 0.57),
    ('wrn-40-2', dict(type='CifarWideResNet', depth=40, widen_factor=2), 128, 2.26),
])
def test_cifar_backbones_have_the_published_parameter_counts(name, backbone, channels, params):
    """Counts for CIFAR-100 classifiers as tabulated by CRD (Tian et al., 2020) and AFD."""
    import mmkd  # noqa: F401  (registers the backbones in mmpretrain)
    from mmpretrain.registry import MODELS
    model = MODELS.build(dict(
        type='ImageClassifier', backbone=backbone, neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=100, in_channels=channels)))
    count = sum(p.numel() for p in model.parameters()) / 1e6
    assert round(count, 2) == params, count
    assert model(torch.randn(2, 3, 32, 32), mode='tensor').shape == (2, 100)
