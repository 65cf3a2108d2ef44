"""FSP against the authors' formulation (loss and gradient, float64), pooling, the channel
check naming the pair, the opt-in connector, the stage schedule and a build through the digits
distiller.

The authors' code read: HobbitLong/RepDistiller ``distiller_zoo/FSP.py`` (``FSP.compute_fsp``,
``FSP.compute_loss``; the losses of the pairs summed in ``helper/pretrain.py``) at
b84f547 (Merge pull request #55), and yoshitomo-matsubara/torchdistill
``torchdistill/losses/mid_level.py`` (``FSPLoss.compute_fsp_matrix``) at 3e4373c.
"""
import pytest
import torch
import torch.nn.functional as F

import mmkd.methods.fsp  # noqa: F401  (registration; mmkd/methods/__init__.py after merging)
from mmkd.methods.fsp import FSP, fsp_matrix

TOL = dict(rtol=1e-10, atol=1e-12)  # float64: the two formulations differ only by rounding


def authors_compute_fsp(g):
    """RepDistiller's FSP.compute_fsp, written out: the larger of two consecutive maps
    average-pooled to the smaller one's (H, H), then the mean over positions of the products
    bot (N, 1, C_i, HW) * top (N, C_{i+1}, 1, HW)."""
    fsp_list = []
    for i in range(len(g) - 1):
        bot, top = g[i], g[i + 1]
        b_h, t_h = bot.shape[2], top.shape[2]
        if b_h > t_h:
            bot = F.adaptive_avg_pool2d(bot, (t_h, t_h))
        elif b_h < t_h:
            top = F.adaptive_avg_pool2d(top, (b_h, b_h))
        bot = bot.unsqueeze(1)
        top = top.unsqueeze(2)
        bot = bot.view(bot.shape[0], bot.shape[1], bot.shape[2], -1)
        top = top.view(top.shape[0], top.shape[1], top.shape[2], -1)
        fsp_list.append((bot * top).mean(-1))
    return fsp_list


def authors_fsp_loss(g_s, g_t):
    """RepDistiller's FSP.forward (per pair (s - t)^2 mean) summed as helper/pretrain.py does
    (``loss = sum(loss_group)``); the teacher's features come from under no_grad."""
    g_t = [f.detach() for f in g_t]
    return sum((s - t).pow(2).mean()
               for s, t in zip(authors_compute_fsp(g_s), authors_compute_fsp(g_t)))


def maps(widths, sizes, n=3, seed=0, grad=False):
    torch.manual_seed(seed)
    out = [torch.randn(n, c, h, h, dtype=torch.float64) for c, h in zip(widths, sizes)]
    return [x.requires_grad_() for x in out] if grad else out


def built(method, s, t):
    method.build(s, t)
    return method(s, t)['loss_fsp']


@pytest.mark.parametrize('sizes', [(8, 8, 4, 2), (4, 8, 8, 2)])
def test_fsp_equals_the_authors_loss_and_gradient(sizes):
    # RepDistiller's resnet32x4 -> resnet8x4 pattern (stem and three stages, equal widths on
    # both sides), with a larger map first and (second case) a larger map second
    widths = (4, 6, 10, 12)
    s = maps(widths, sizes, seed=0, grad=True)
    t = maps(widths, sizes, seed=1)
    out = built(FSP(), tuple(s), tuple(t))
    assert out.dtype == torch.float64
    s2 = [x.detach().clone().requires_grad_() for x in s]
    ref = authors_fsp_loss(s2, t)
    torch.testing.assert_close(out, ref, **TOL)
    out.backward()
    ref.backward()
    for a, b in zip(s, s2):
        torch.testing.assert_close(a.grad, b.grad, **TOL)


def test_fsp_matrix_by_hand_and_torchdistill_max_pooling():
    # one position, one channel each: G = f1 * f0
    a = torch.tensor([2.0]).view(1, 1, 1, 1)
    b = torch.tensor([3.0, -1.0]).view(1, 2, 1, 1)
    assert fsp_matrix(a, b).tolist() == [[[6.0], [-2.0]]]
    # torchdistill's compute_fsp_matrix (max pooling of the larger map, then
    # matmul(first, second^T) / hw): ours is its transpose (RepDistiller's orientation)
    torch.manual_seed(2)
    f = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    s = torch.randn(2, 5, 4, 4, dtype=torch.float64)
    ref = F.adaptive_max_pool2d(f, (4, 4)).flatten(2) @ s.flatten(2).transpose(1, 2) / 16
    torch.testing.assert_close(fsp_matrix(f, s, 'max'), ref.transpose(1, 2), **TOL)
    assert not torch.allclose(fsp_matrix(f, s, 'avg'), fsp_matrix(f, s, 'max'))


def test_fsp_identical_features_give_zero_and_no_teacher_gradient():
    s = maps((3, 4, 5), (4, 4, 2), grad=True)
    out = built(FSP(), s, [x.detach().clone() for x in s])
    assert out.item() == 0.0
    t = maps((3, 4, 5), (4, 4, 2), seed=3, grad=True)
    built(FSP(), maps((3, 4, 5), (4, 4, 2), grad=True), t).backward()
    assert all(x.grad is None for x in t)


def test_fsp_refuses_unequal_channels_naming_the_pair_and_connects_on_request():
    s = maps((4, 8, 16), (8, 4, 2))
    t = maps((4, 8, 32), (8, 4, 2))
    with pytest.raises(ValueError, match=r'FSP pair 1 \(points 1 and 2\).*conv1x1'):
        FSP().build(s, t)
    with pytest.raises(ValueError, match='at least two record points'):
        FSP().build(s[:1], t[:1])
    with pytest.raises(ValueError, match='3 record points but the teacher gives 2'):
        FSP().build(s, t[:2])
    method = FSP(connector='conv1x1')
    sg = [x.float().requires_grad_() for x in s]
    out = built(method, sg, [x.float() for x in t])
    assert [type(c).__name__ for c in method.connectors] == ['Identity', 'Identity', 'Conv2d']
    assert method.connectors[2].weight.shape == (32, 16, 1, 1)
    out.backward()
    assert sg[2].grad is not None and method.connectors[2].weight.grad is not None


def test_fsp_stage_is_a_step_schedule():
    # RepDistiller's 30 init epochs as a block weight: on in epochs 1..30, off after
    from mmkd.distillers import build_loss_weight
    w = build_loss_weight(dict(type='Step', value=1.0, milestones=[30], gamma=0.0,
                               by_epoch=True), 'fsp')
    assert [w.at(t) for t in (1, 30, 31, 270)] == [1.0, 1.0, 0.0, 0.0]


def test_fsp_builds_and_trains_in_the_digits_distiller(teacher_ckpts):
    from conftest import batch, build, digits_cfg
    stages = ['backbone.layer1', 'backbone.layer2', 'backbone.layer3', 'backbone.layer4']
    model = build(digits_cfg(teacher_ckpts['digits'], blocks=dict(stages=dict(
        student=stages, teacher=stages, method=dict(type='FSP', connector='conv1x1'),
        loss_weight=1.0))))
    losses = model(*batch(n=4, size=16), mode='loss')
    assert 'distill.stages.loss_fsp' in losses, sorted(losses)
    loss = sum(v for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(loss)
    loss.backward()
    # the digits teacher (quarter width) and student (sixteenth) differ at every stage
    assert all(c.weight.grad is not None for c in model.blocks['stages'].method.connectors)
