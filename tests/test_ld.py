"""LD (mmkd.methods.LD): equal to mmdet's own LDHead loss, the formula, degenerate batches,
errors. It trains end to end through tools/train.py in the every-demo-config test
(configs/demo/shapes_det/ld_*.py)."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.registry import DefaultScope

from mmkd.methods import LD

HEAD = dict(num_classes=3, in_channels=8, feat_channels=8, stacked_convs=1, reg_max=4,
            norm_cfg=dict(type='GN', num_groups=4, requires_grad=True),
            anchor_generator=dict(type='AnchorGenerator', ratios=[1.0], octave_base_scale=2,
                                  scales_per_octave=1, strides=[8, 16]),
            loss_cls=dict(type='QualityFocalLoss', use_sigmoid=True, beta=2.0,
                          loss_weight=1.0),
            loss_dfl=dict(type='DistributionFocalLoss', loss_weight=0.25),
            loss_bbox=dict(type='GIoULoss', loss_weight=2.0),
            train_cfg=dict(assigner=dict(type='ATSSAssigner', topk=9), allowed_border=-1,
                           pos_weight=-1, debug=False))
SIZE = 64


def build_head(kind, **extra):
    import mmdet.models  # noqa: F401  (registers the heads)
    from mmdet.registry import MODELS
    from mmengine.config import ConfigDict
    cfg = dict(HEAD, type=kind, **extra)
    cfg['train_cfg'] = ConfigDict(cfg['train_cfg'])
    with DefaultScope.overwrite_default_scope('mmdet'):
        return MODELS.build(cfg)


class Student(nn.Module):
    def __init__(self, head):
        super().__init__()
        self.bbox_head = head


def samples(boxes_per_image):
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    out = []
    for boxes in boxes_per_image:
        s = DetDataSample(metainfo=dict(img_shape=(SIZE, SIZE), pad_shape=(SIZE, SIZE),
                                        batch_input_shape=(SIZE, SIZE)))
        s.gt_instances = InstanceData(
            bboxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            labels=torch.arange(len(boxes)) % 3)
        out.append(s)
    return out


def outputs(seed, n=2, reg_max=4, classes=3):
    g = torch.Generator().manual_seed(seed)
    cls = [torch.randn(n, classes, SIZE // s, SIZE // s, generator=g) for s in (8, 16)]
    reg = [torch.randn(n, 4 * (reg_max + 1), SIZE // s, SIZE // s, generator=g) * 2
           for s in (8, 16)]
    return cls, reg


BOXES = [[[4.0, 6.0, 30.0, 28.0], [36.0, 30.0, 60.0, 62.0]], [[10.0, 10.0, 50.0, 44.0]]]


def bound_ld(head, **kwargs):
    ld = LD(**kwargs)
    ld.bind_student(Student(head))
    return ld


def test_ld_equals_mmdet_ld_head_loss():
    """The same student outputs, teacher outputs and boxes: mmdet 3.3's LDHead.loss_by_feat's
    loss_ld (summed over its levels) is our loss_ld, gradients included."""
    ld_head = build_head('LDHead', loss_ld=dict(type='KnowledgeDistillationKLDivLoss',
                                                loss_weight=1.0, T=10))
    gfl_head = build_head('GFLHead')
    cls, reg = outputs(0)
    _, soft = outputs(1)
    data = samples(BOXES)
    reg_a = [r.clone().requires_grad_() for r in reg]
    theirs = ld_head.loss_by_feat(cls, reg_a, [d.gt_instances for d in data],
                                  [d.metainfo for d in data], soft)['loss_ld']
    theirs = sum(theirs)
    reg_b = [r.clone().requires_grad_() for r in reg]
    ours = bound_ld(gfl_head)([tuple(cls), *reg_b], list(soft), data)['loss_ld']
    assert theirs.item() > 0
    torch.testing.assert_close(ours, theirs)
    theirs.backward()
    ours.backward()
    for a, b in zip(reg_a, reg_b):
        torch.testing.assert_close(a.grad, b.grad)


def test_ld_formula_at_the_positive_locations():
    """Written out: sum over positives and sides of w * T^2 * mean_bins KL(p_T || p_S) / 4,
    w the student's max class probability, positives from the head's own assignment."""
    head = build_head('GFLHead')
    cls, reg = outputs(2)
    _, soft = outputs(3)
    data = samples(BOXES)
    tau, bins = 3.0, head.reg_max + 1
    ours = bound_ld(head, tau=tau)([tuple(cls), *reg], list(soft), data)['loss_ld']
    anchors, valid = head.get_anchors([c.shape[-2:] for c in cls],
                                      [d.metainfo for d in data], device='cpu')
    labels = head.get_targets(anchors, valid, [d.gt_instances for d in data],
                              [d.metainfo for d in data])[1]
    expected = torch.zeros(())
    for c, r, t, lab in zip(cls, reg, soft, labels):
        for img in range(c.shape[0]):
            for j, label in enumerate(lab[img].tolist()):
                if label >= head.num_classes:
                    continue
                y, x = divmod(j, c.shape[-1])
                w = c[img, :, y, x].sigmoid().max()
                for side in range(4):
                    s_bins = r[img, side * bins:(side + 1) * bins, y, x]
                    t_bins = t[img, side * bins:(side + 1) * bins, y, x]
                    p_t = F.softmax(t_bins / tau, 0)
                    kl = (p_t * (p_t.log() - F.log_softmax(s_bins / tau, 0))).mean()
                    expected = expected + w * kl * tau ** 2 / 4
    assert expected > 0
    torch.testing.assert_close(ours, expected)


def test_ld_is_zero_for_a_copy_of_the_teacher_and_without_boxes():
    head = build_head('GFLHead')
    cls, reg = outputs(4)
    ld = bound_ld(head)
    same = ld([tuple(cls), *reg], list(reg), samples(BOXES))['loss_ld']
    assert same.abs().item() < 1e-5
    reg = [r.requires_grad_() for r in reg]
    empty = ld([tuple(cls), *reg], [r.detach() + 1 for r in reg], samples([[], []]))['loss_ld']
    assert torch.isfinite(empty) and empty.item() == 0
    empty.backward()  # still part of the graph
    assert all(r.grad is not None and not r.grad.any() for r in reg)


def test_ld_errors_name_the_head_and_the_block():
    with pytest.raises(ValueError, match='GFL-style head'):
        LD().bind_student(Student(nn.Conv2d(1, 1, 1)))
    with pytest.raises(KeyError, match='bbox_head'):
        LD(head='bbox_head').bind_student(nn.Sequential())
    with pytest.raises(ValueError, match='tau'):
        LD(tau=0.5)
    ld = bound_ld(build_head('GFLHead'))
    cls, reg = outputs(5)
    with pytest.raises(ValueError, match=r"bbox_head\.scales\.\*"):
        ld.build(reg[0], reg[0])  # the head's whole output is not what LD reads
    with pytest.raises(ValueError, match='reg_max'):
        ld.build([tuple(cls), *reg], [r[:, :8] for r in reg])
    with pytest.raises(ValueError, match='must be equal'):
        ld.build([tuple(cls), *reg], reg[:1])
    with pytest.raises(ValueError, match='gt_instances'):
        ld([tuple(cls), *reg], list(reg), None)
