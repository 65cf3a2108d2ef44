"""MLKD against the authors' formulation (loss and gradient, float64), the multi-view pipeline
(MultiViews + mmkd.multiview_collate) and one loss step through the digits distiller.

The authors' code read: Jin-Ying/Multi-Level-Logit-Distillation at
5ee473fcf193dfb00a0598b64d0acfe6ad58a482, ``mdistiller/distillers/KD_ours.py`` (``kd_loss``,
``cc_loss``, ``bc_loss``, ``KD_ours.forward_train``) and ``mdistiller/dataset/cifar100.py``
(``get_cifar100_train_transform_strong``: two independent pipelines per image, weak and strong).
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmpretrain.structures import DataSample

import mmkd.datasets.transforms_multiview  # noqa: F401
import mmkd.methods.mlkd  # noqa: F401
from mmkd.datasets.transforms_multiview import MultiViews, multiview_collate
from mmkd.methods.mlkd import MLKD

TOL = dict(rtol=1e-10, atol=1e-12)  # float64: the two formulations differ only by rounding


# ------------------------------------------------------------- the authors' formulation
def authors_kd(s, t, temperature):
    """kd_loss(reduce=True): KL summed over classes, mean over the batch, times T^2."""
    log_ps = F.log_softmax(s / temperature, dim=1)
    pt = F.softmax(t / temperature, dim=1)
    return F.kl_div(log_ps, pt, reduction='none').sum(1).mean() * temperature ** 2


def authors_cc(s, t, temperature):
    """cc_loss(reduce=True): class x class Gram matrices of the softmaxes, squared difference
    summed, divided by the class count."""
    ps, pt = F.softmax(s / temperature, dim=1), F.softmax(t / temperature, dim=1)
    return ((torch.mm(pt.transpose(1, 0), pt) - torch.mm(ps.transpose(1, 0), ps)) ** 2
            ).sum() / t.shape[1]


def authors_bc(s, t, temperature):
    """bc_loss(reduce=True): sample x sample Gram matrices, divided by the batch size."""
    ps, pt = F.softmax(s / temperature, dim=1), F.softmax(t / temperature, dim=1)
    return ((torch.mm(pt, pt.transpose(1, 0)) - torch.mm(ps, ps.transpose(1, 0))) ** 2
            ).sum() / t.shape[0]


def authors_mlkd(s_w, s_s, t_w, t_s, temperature, kd_weight):
    """KD_ours.forward_train's distillation losses (loss_kd, loss_cc, loss_bc), written out:
    the masks from np.percentile(., 50) of the teacher's weak-view confidences multiply the
    batch-reduced losses and are averaged; the strong instance term takes T = 2, 6 from the
    weak logits; the strong cc/bc terms are not returned by the authors, so not here."""
    p = F.softmax(t_w.detach(), dim=1)
    conf = p.max(dim=1)[0]
    mask = conf.le(float(np.percentile(conf.numpy().flatten(), 50))).bool()
    class_conf = p.sum(dim=0)
    class_mask = class_conf.le(float(np.percentile(class_conf.numpy().flatten(), 50))).bool()
    w = kd_weight
    order = (temperature, 3.0, 5.0, 2.0, 6.0)
    kd_weak = sum(w * (authors_kd(s_w, t_w, T) * mask).mean() for T in order)
    kd_strong = (sum(w * authors_kd(s_s, t_s, T) for T in order[:3])
                 + sum(w * authors_kd(s_w, t_w, T) for T in order[3:]))
    cc_weak = sum(w * (authors_cc(s_w, t_w, T) * class_mask).mean() for T in order)
    bc_weak = sum(w * (authors_bc(s_w, t_w, T) * mask).mean() for T in order)
    return dict(loss_kd=kd_weak + kd_strong, loss_cc=cc_weak, loss_bc=bc_weak)


def two_view_samples(b, labels=None):
    labels = labels if labels is not None else [i % 10 for i in range(b)]
    return [DataSample(metainfo=dict(view=v)).set_gt_label(int(y))
            for v in (0, 1) for y in labels]


def built(method, s, t):
    method.build(s, t)
    return method


# ------------------------------------------------------------------------ fidelity
@pytest.mark.parametrize('b,c,tau', [(8, 10, 4.0), (7, 5, 1.0)])
def test_mlkd_equals_the_authors_loss_and_gradient(b, c, tau):
    torch.manual_seed(0)
    s = (torch.randn(2 * b, c, dtype=torch.float64) * 2).requires_grad_()
    t = torch.randn(2 * b, c, dtype=torch.float64) * 3
    out = built(MLKD(tau=tau), s, t)(s, t, two_view_samples(b))
    assert set(out) == {'loss_kd', 'loss_cc', 'loss_bc', 'mask_ratio', 'class_mask_ratio'}
    s2 = s.detach().clone().requires_grad_()
    ref = authors_mlkd(s2[:b], s2[b:], t[:b], t[b:], tau, kd_weight=1.0)
    for k in ref:
        torch.testing.assert_close(out[k], ref[k], **TOL)
    sum(out[k] for k in ref).backward()
    sum(ref.values()).backward()
    torch.testing.assert_close(s.grad, s2.grad, **TOL)
    assert s.grad[b:].abs().sum() > 0  # the strong half is trained too
    # an odd batch: the median is the middle value, (b + 1) / 2 of b samples at or below it
    expected = 0.5 if b % 2 == 0 else (b + 1) / (2 * b)
    assert out['mask_ratio'].item() == pytest.approx(expected)


def test_mlkd_weights_and_the_paper_variant():
    torch.manual_seed(1)
    b, c = 6, 9
    s, t = torch.randn(2 * b, c, dtype=torch.float64), torch.randn(2 * b, c, dtype=torch.float64)
    samples = two_view_samples(b)
    base = built(MLKD(), s, t)(s, t, samples)
    weighted = built(MLKD(instance_weight=2.0, batch_weight=3.0, class_weight=0.5), s, t)(
        s, t, samples)
    for k, w in dict(loss_kd=2.0, loss_bc=3.0, loss_cc=0.5).items():
        torch.testing.assert_close(weighted[k], w * base[k], **TOL)
    # strong_from_weak=0: every temperature of the strong instance term on the strong view
    paper = built(MLKD(strong_from_weak=0), s, t)(s, t, samples)
    m = base['mask_ratio']
    ref = sum(m * authors_kd(s[:b], t[:b], T) + authors_kd(s[b:], t[b:], T)
              for T in (4.0, 3.0, 5.0, 2.0, 6.0))
    torch.testing.assert_close(paper['loss_kd'], ref, **TOL)
    # identical logits: every term is 0
    zero = built(MLKD(), t, t)(t, t, samples)
    for k in ('loss_kd', 'loss_bc', 'loss_cc'):
        assert zero[k].abs().item() < 1e-12


def test_mlkd_refuses_a_batch_that_is_not_two_views():
    s, t = torch.randn(8, 5), torch.randn(8, 5)
    m = built(MLKD(), s, t)
    with pytest.raises(ValueError, match='MLKD needs the two-view batch'):
        m(s, t, None)
    plain = [DataSample().set_gt_label(0) for _ in range(8)]  # no collate: no views
    with pytest.raises(ValueError, match="collate_fn=dict\\(type='mmkd.multiview_collate'\\)"):
        m(s, t, plain)
    shuffled = two_view_samples(4)[::-1]
    with pytest.raises(ValueError, match='views'):
        m(s, t, shuffled)
    with pytest.raises(ValueError, match='same number of classes'):
        MLKD().build(torch.randn(4, 5), torch.randn(4, 6))
    with pytest.raises(ValueError, match=r'logits \(N, C\)'):
        MLKD().build(torch.randn(4, 5, 2, 2), torch.randn(4, 5, 2, 2))
    with pytest.raises(ValueError, match='strong_from_weak'):
        MLKD(strong_from_weak=6)
    with pytest.raises(ValueError, match='tau'):
        MLKD(tau=0.0)


# ------------------------------------------------------------- the multi-view pipeline
def digits_items(n, pipeline):
    from mmkd.datasets import DigitsDataset
    ds = DigitsDataset(split='train', img_size=16, max_train=20, pipeline=pipeline)
    return [ds[i] for i in range(n)]


WEAK = [dict(type='RandomCrop', crop_size=16, padding=2)]
STRONG = [dict(type='RandomCrop', crop_size=16, padding=2),
          dict(type='RandAugment', policies='timm_increasing', num_policies=2, total_level=10,
               magnitude_level=9, magnitude_std='inf', hparams=dict(pad_val=0))]


def test_multiviews_and_collate_lay_out_weak_then_strong():
    from mmengine.registry import FUNCTIONS, DefaultScope
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        pipeline = [dict(type='mmkd.MultiViews', views=[WEAK, STRONG]), dict(type='PackInputs')]
        items = digits_items(3, pipeline)
        # the Runner finds the collate function by name from any default scope
        assert FUNCTIONS.get('mmkd.multiview_collate') is multiview_collate
    assert all(isinstance(it['inputs'], list) and len(it['inputs']) == 2 for it in items)
    batch = multiview_collate(items)
    assert len(batch['inputs']) == 6 and len(batch['data_samples']) == 6
    for v in (0, 1):
        for i in range(3):
            assert torch.equal(batch['inputs'][3 * v + i], items[i]['inputs'][v])
            sample = batch['data_samples'][3 * v + i]
            assert sample.metainfo['view'] == v
            assert int(sample.gt_label) == int(items[i]['data_samples'].gt_label)
    # copies: the preprocessor's setting labels on one view leaves the other's sample alone
    assert batch['data_samples'][0] is not batch['data_samples'][3]
    with pytest.raises(TypeError, match="mmkd.MultiViews"):
        multiview_collate([dict(inputs=torch.zeros(3, 4, 4), data_samples=DataSample())])
    with pytest.raises(ValueError, match='two or more pipelines'):
        MultiViews(views=[WEAK])


def test_mlkd_trains_through_the_digits_distiller(teacher_ckpts):
    from conftest import build, digits_cfg
    from mmengine.registry import DefaultScope
    model = build(digits_cfg(teacher_ckpts['digits'], blocks=dict(
        logits=dict(student='head.fc', teacher='head.fc', method=dict(type='MLKD'),
                    loss_weight=0.9))))
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        items = digits_items(4, [dict(type='mmkd.MultiViews', views=[WEAK, STRONG]),
                                 dict(type='PackInputs')])
    data = model.data_preprocessor(multiview_collate(items), True)
    assert data['inputs'].shape == (8, 3, 16, 16)
    losses = model(**data, mode='loss')
    keys = {f'distill.logits.{k}' for k in ('loss_kd', 'loss_bc', 'loss_cc', 'mask_ratio')}
    assert keys <= set(losses), sorted(losses)
    loss = sum(v for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in model.student.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    # The block's value is the method on the student's and the teacher's logits of the whole
    # 2B batch (weak first): recompute both models' logits directly and compare.
    model.zero_grad()
    with torch.no_grad():
        s = model.student(data['inputs'], mode='tensor')
        teacher = next(iter(model._teachers.values()))
        t = teacher.model(teacher.view(data['inputs'], data['data_samples']), mode='tensor')
        ref = MLKD()(s, t, data['data_samples'])
    for k in ('loss_kd', 'loss_bc', 'loss_cc'):
        torch.testing.assert_close(losses[f'distill.logits.{k}'].detach(), 0.9 * ref[k],
                                   rtol=1e-5, atol=1e-6)
    # A plain single-view batch is refused by name, not split silently.
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        plain = digits_items(4, [dict(type='PackInputs')])
    from mmengine.dataset import pseudo_collate
    data = model.data_preprocessor(pseudo_collate(plain), True)
    with pytest.raises(ValueError, match='MLKD needs the two-view batch'):
        model(**data, mode='loss')


@pytest.mark.parametrize('name,size', [
    ('mlkd/mlkd_resnet32x4_resnet8x4_cifar100.py', 32),
    ('mlkd/mlkd_wrn-40-2_wrn-16-2_cifar100.py', 32),
    ('mlkd/mlkd_resnet56_resnet20_cifar100.py', 32),
    ('mlkd/mlkd_resnet34_resnet18_8xb32_in1k.py', 300),
    ('demo/digits/mlkd_resnet34-wide_resnet18-tiny_digits.py', 16)])
def test_the_configs_train_pipelines_give_two_views(name, size):
    import os.path as osp

    import numpy as np
    from conftest import REPO
    from mmcv.transforms import Compose
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    cfg = Config.fromfile(osp.join(REPO, 'configs', name))
    assert cfg.train_dataloader.collate_fn.type == 'mmkd.multiview_collate'
    assert cfg.model.blocks.logits.method.type == 'MLKD'
    pipeline = [t for t in cfg.train_dataloader.dataset.pipeline
                if t['type'] != 'LoadImageFromFile']
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        pipe = Compose(pipeline)
    rng = np.random.default_rng(0)
    items = [pipe(dict(img=rng.integers(0, 255, (size, size, 3), dtype=np.uint8), gt_label=1))
             for _ in range(2)]
    batch = multiview_collate(items)
    crop = 224 if size == 300 else size
    assert [tuple(x.shape) for x in batch['inputs']] == [(3, crop, crop)] * 4
    assert [s.metainfo['view'] for s in batch['data_samples']] == [0, 0, 1, 1]
