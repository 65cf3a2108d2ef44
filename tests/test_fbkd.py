"""FBKD against MMRazor's FBKDLoss and FBKD connectors, written out below, on identical inputs
and weights (loss and gradient w.r.t. the student levels, float64); options, errors; one loss
step through a Distiller on the shapes-det demo pair (random teacher weights).

Reference: open-mmlab/mmrazor commit 0fe347f, mmrazor/models/losses/fbkd_loss.py
(``FBKDLoss``, ``mask_l2_loss``) and mmrazor/models/architectures/connectors/fbkd_connector.py
(``NonLocal2dMaxpoolNstride``, ``FBKDStudentConnector``, ``FBKDTeacherConnector``), with
MMRazor's COCO config configs/distill/mmdet/fbkd/fbkd_fpn_faster-rcnn_r101_faster-rcnn_r50_1x_
coco.py for the per-level non-local settings. The authors' repository
(ArchipLab-LinfengZhang/Object-Detection-Knowledge-Distillation-ICLR2021, 3e2bb66) has no code.
"""
import copy

import pytest
import torch
import torch.nn as nn
from mmcv.cnn import NonLocal2d
from mmengine.config import Config

import mmkd  # noqa: F401
import mmkd.methods.fbkd  # noqa: F401
from mmkd.methods.fbkd import FBKD, attention_masks

from conftest import DEMO, build

TOL = 1e-10  # float64: the two computations differ only in summation order


# ------------------------------------------------------- MMRazor's formulation, written out
class RazorNonLocal(NonLocal2d):
    """``NonLocal2dMaxpoolNstride``: mmcv's NonLocal2d, then an extra max-pool of
    ``maxpool_stride`` wrapped around g and phi (after mmcv's own 2x2 when sub_sample)."""

    def __init__(self, in_channels, reduction=2, mode='embedded_gaussian', sub_sample=False,
                 maxpool_stride=2):
        super().__init__(in_channels=in_channels, sub_sample=sub_sample,
                         conv_cfg=dict(type='Conv2d'), norm_cfg=dict(type='BN'),
                         reduction=reduction, mode=mode, zeros_init=True)
        if sub_sample:
            max_pool_layer = nn.MaxPool2d(kernel_size=(maxpool_stride, maxpool_stride))
            self.g = nn.Sequential(self.g, max_pool_layer)
            self.phi = nn.Sequential(self.phi, max_pool_layer)


def razor_masks(x, spatial_T=0.5, channel_T=0.5):
    s_mask = torch.mean(torch.abs(x), [1], keepdim=True)
    size = s_mask.size()
    s_mask = torch.softmax(s_mask.view(x.size(0), -1) / spatial_T, dim=1) * size[-1] * size[-2]
    c_mask = torch.mean(torch.abs(x), [2, 3], keepdim=True)
    c_size = c_mask.size()
    c_mask = torch.softmax(c_mask.view(x.size(0), -1) / channel_T, dim=1) * x.size(1)
    return s_mask.view(size), c_mask.view(c_size)


class RazorStudentConnector(nn.Module):
    def __init__(self, in_channels, **nl):
        super().__init__()
        self.channel_wise_adaptation = nn.Linear(in_channels, in_channels)
        self.spatial_wise_adaptation = nn.Conv2d(1, 1, kernel_size=3, stride=1, padding=1)
        self.adaptation_layers = nn.Conv2d(in_channels, in_channels, 1, 1, 0)
        self.student_non_local = RazorNonLocal(in_channels, **nl)
        self.non_local_adaptation = nn.Conv2d(in_channels, in_channels, 1, 1, 0)

    def forward(self, x):
        s_spatial_mask, s_channel_mask = razor_masks(x)
        s_feat_adapt = self.adaptation_layers(x)
        s_channel_pool_adapt = self.channel_wise_adaptation(torch.mean(x, [2, 3]))
        s_spatial_pool = torch.mean(x, [1]).view(x.size(0), 1, x.size(2), x.size(3))
        s_spatial_pool_adapt = self.spatial_wise_adaptation(s_spatial_pool)
        s_relation_adapt = self.non_local_adaptation(self.student_non_local(x))
        return (s_spatial_mask, s_channel_mask, s_channel_pool_adapt, s_spatial_pool_adapt,
                s_relation_adapt, s_feat_adapt)


class RazorTeacherConnector(nn.Module):
    def __init__(self, in_channels, **nl):
        super().__init__()
        self.teacher_non_local = RazorNonLocal(in_channels, **nl)

    def forward(self, x):
        t_spatial_mask, t_channel_mask = razor_masks(x)
        t_spatial_pool = torch.mean(x, [1]).view(x.size(0), 1, x.size(2), x.size(3))
        return t_spatial_mask, t_channel_mask, t_spatial_pool, self.teacher_non_local(x), x


def mask_l2_loss(a, b, spatial=None, channel=None):
    diff = (a - b) ** 2
    if spatial is not None:
        diff = diff * spatial
    if channel is not None:
        diff = diff * channel
    return torch.sum(diff) ** 0.5


def razor_fbkd_loss(s_input, t_input, mask_l2_weight=7e-5, channel_weight=4e-3,
                    spatial_weight=4e-3, nonloacl_weight=7e-5, use_channel_mask=False):
    (s_spatial_mask, s_channel_mask, s_channel_pool_adapt, s_spatial_pool_adapt,
     s_relation_adapt, s_feat_adapt) = s_input
    t_spatial_mask, t_channel_mask, t_spatial_pool, t_relation, t_feat = t_input
    spatial_sum_mask = ((t_spatial_mask + s_spatial_mask) / 2).detach()
    channel_sum_mask = ((t_channel_mask + s_channel_mask) / 2).detach()
    losses = mask_l2_loss(t_feat, s_feat_adapt, spatial_sum_mask,
                          channel_sum_mask if use_channel_mask else None) * mask_l2_weight
    losses += torch.dist(torch.mean(t_feat, [2, 3]), s_channel_pool_adapt) * channel_weight
    losses += torch.dist(t_spatial_pool, s_spatial_pool_adapt) * spatial_weight
    losses += torch.dist(t_relation, s_relation_adapt, p=2) * nonloacl_weight
    return losses


# MMRazor's COCO config: levels 0-3 with (reduction, maxpool_stride) 4/8, 4/4, 2/2, 2/2.
RAZOR_LEVELS = [dict(reduction=4, maxpool_stride=8), dict(reduction=4, maxpool_stride=4),
                dict(), dict()]


def randomise(module, seed):
    """Every parameter (the BN weight of conv_out included, 0 at init) random, so that each
    branch carries gradient."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.3)


def levels(seed, channels=8, sizes=(32, 16, 8, 4), n=2, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, channels, s, s, generator=g, dtype=torch.float64) * scale
            for s in sizes]


# ------------------------------------------------------------------------------- fidelity
@pytest.mark.parametrize('channel_mask', [False, True])
def test_fbkd_equals_mmrazor_loss_and_student_gradient_float64(channel_mask):
    s_feats, t_feats = levels(0), levels(1, scale=2.0)
    ours = FBKD(channel_mask=channel_mask)
    ours.build(tuple(s_feats), tuple(t_feats))
    ours.double().train()
    randomise(ours, 3)

    ref_loss = 0
    s_ref = [s.clone().requires_grad_() for s in s_feats]
    for i, (s, t) in enumerate(zip(s_ref, t_feats)):
        nl = dict(mode='dot_product', sub_sample=True, **RAZOR_LEVELS[i])
        stu, tea = RazorStudentConnector(8, **nl).double(), RazorTeacherConnector(8, **nl).double()
        mine = ours.connectors[i].state_dict()
        stu.load_state_dict({k: v for k, v in mine.items()
                             if not k.startswith('teacher_non_local')})
        tea.load_state_dict({k: v for k, v in mine.items() if k.startswith('teacher_non_local')})
        ref_loss = ref_loss + razor_fbkd_loss(stu.train()(s), tea.train()(t),
                                              use_channel_mask=channel_mask)
    ref_loss.backward()

    s_ours = [s.clone().requires_grad_() for s in s_feats]
    losses = ours(tuple(s_ours), tuple(t_feats))
    assert set(losses) == {'loss_feat', 'loss_channel', 'loss_spatial', 'loss_nonlocal'}
    total = sum(losses.values())
    total.backward()
    assert total.dtype == torch.float64
    assert abs(total.item() - ref_loss.item()) <= TOL * abs(ref_loss.item())
    for a, b in zip(s_ours, s_ref):
        assert b.grad.abs().max() > 0
        assert (a.grad - b.grad).abs().max() <= TOL * b.grad.abs().max()
    # every connector is trained (the teacher-side non-local block included)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in ours.parameters())


def test_pooling_of_the_non_local_branches_is_mmcvs_2x2_then_maxpool_stride():
    ours = FBKD(reduction=(4, 4, 2), maxpool_stride=(8, 4, 2))
    ours.build(tuple(levels(0, sizes=(32, 16, 8, 8, 4))),
               tuple(levels(1, sizes=(32, 16, 8, 8, 4))))
    strides = [conn.student_non_local.phi[1].kernel_size for conn in ours.connectors]
    assert strides == [(8, 8), (4, 4), (2, 2), (2, 2), (2, 2)]  # the last value repeats
    assert [c.teacher_non_local.phi[0][1].kernel_size for c in ours.connectors][0] == (2, 2)
    assert [c.student_non_local.inter_channels for c in ours.connectors] == [2, 2, 4, 4, 4]
    assert [c.pool for c in ours.connectors] == [16, 8, 4, 4, 4]


def test_masks_average_to_one_and_sharpen_with_temperature():
    x = torch.randn(3, 5, 6, 7)
    spatial, channel = attention_masks(x, 0.5, 0.5)
    assert spatial.shape == (3, 1, 6, 7) and channel.shape == (3, 5, 1, 1)
    assert torch.allclose(spatial.mean((1, 2, 3)), torch.ones(3), atol=1e-6)
    assert torch.allclose(channel.mean((1, 2, 3)), torch.ones(3), atol=1e-6)
    assert attention_masks(x, 0.1, 0.5)[0].max() > spatial.max()


def test_different_widths_weights_and_level_mean():
    """Student 4 channels, teacher 8: the three adaptation layers map 4 -> 8; the term
    weights scale their terms; 'mean' divides by the number of levels."""
    torch.manual_seed(0)
    s = (torch.randn(2, 4, 8, 8), torch.randn(2, 4, 4, 4))
    t = (torch.randn(2, 8, 8, 8), torch.randn(2, 8, 4, 4))
    m = FBKD(sub_sample=False)
    m.build(s, t)
    conn = m.connectors[0]
    assert conn.adaptation_layers.weight.shape == (8, 4, 1, 1)
    assert conn.channel_wise_adaptation.weight.shape == (8, 4)
    assert conn.non_local_adaptation.weight.shape == (8, 4, 1, 1)
    assert conn.student_non_local.in_channels == 4 and conn.teacher_non_local.in_channels == 8
    base = m(s, t)
    m2 = FBKD(sub_sample=False, mask_l2_weight=1.0, nonlocal_weight=0.0,
              level_reduction='mean')
    m2.build(s, t)
    m2.load_state_dict(m.state_dict())
    other = m2(s, t)
    assert other['loss_feat'].item() == pytest.approx(base['loss_feat'].item() / 7e-5 / 2,
                                                      rel=1e-5)
    assert other['loss_nonlocal'].item() == 0.0
    assert all(torch.isfinite(v) for v in base.values())


def test_errors_name_the_level():
    s, t = torch.randn(2, 4, 8, 8), torch.randn(2, 8, 8, 8)
    default = FBKD()
    default.build((s,), (t,))  # a small dry run sizes the modules; real batches are checked
    with pytest.raises(ValueError, match='level 0 is .*smaller than its non-local pooling'):
        default((s,), (t,))  # 2 x 8 > 8
    with pytest.raises(ValueError, match='sizes must be equal'):
        FBKD(sub_sample=False).build((s,), (torch.randn(2, 8, 4, 4),))
    with pytest.raises(ValueError, match='channel_mask=True'):
        FBKD(sub_sample=False, channel_mask=True).build((s,), (t,))
    with pytest.raises(ValueError, match=r'student gives 2 levels but teacher gives 1'):
        FBKD(sub_sample=False).build((s, s), (t,))
    with pytest.raises(ValueError, match='non-empty'):
        FBKD(reduction=[])
    with pytest.raises(ValueError, match='maxpool_stride'):
        FBKD(maxpool_stride=0)
    with pytest.raises(ValueError, match='mode'):
        FBKD(mode='gaussian')
    m = FBKD(sub_sample=(True, False), maxpool_stride=2)
    m.build((s,), (t,))
    with pytest.raises(ValueError, match='smaller than its non-local pooling'):
        m((torch.randn(2, 4, 2, 2),), (torch.randn(2, 8, 2, 2),))


# ------------------------------------------------------------------------- through a Distiller
def test_demo_config_builds_and_takes_a_loss_step(teacher_ckpts):
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    cfg = Config.fromfile(f'{DEMO}/shapes_det/fbkd_retinanet_r34-wide_r18-tiny_fpn_shapes.py')
    model = copy.deepcopy(cfg.model)
    model.teacher.checkpoint = teacher_ckpts['det']
    torch.manual_seed(0)
    d = build(model, cfg.default_scope).train()
    conns = d.methods['fpn'].connectors
    assert len(conns) == 3  # P3-P5 of the demo's FPN; student 64 -> teacher 128 channels
    assert conns[0].adaptation_layers.weight.shape == (128, 64, 1, 1)
    samples = []
    for _ in range(2):
        s = DetDataSample(metainfo=dict(img_shape=(64, 64), pad_shape=(64, 64),
                                        batch_input_shape=(64, 64), scale_factor=(1., 1.)))
        s.gt_instances = InstanceData(bboxes=torch.tensor([[4., 4., 30., 30.]]),
                                      labels=torch.tensor([1]))
        samples.append(s)
    losses = d(torch.randn(2, 3, 64, 64), samples, mode='loss')
    keys = {f'distill.fpn.loss_{k}' for k in ('feat', 'channel', 'spatial', 'nonlocal')}
    assert keys | {'student.loss_cls', 'student.loss_bbox'} <= set(losses)
    total, _ = d.parse_losses(losses)  # RetinaNet's losses are lists, one per level
    total.backward()
    assert all(torch.isfinite(losses[k]) and losses[k] > 0 for k in keys)
    assert conns[0].teacher_non_local.conv_out.norm.weight.grad is not None
    assert d.student.backbone.conv1.weight.grad.abs().sum() > 0
