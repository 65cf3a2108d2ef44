"""CrossKD (mmkd.methods.CrossKD) against the authors' formulation, written out below from
jbwang1997/CrossKD at 87e156a4 (mmdet/models/detectors/crosskd_gfl.py, crosskd_retinanet.py:
forward_crosskd_single, reuse_teacher_head, align_scale, loss_by_feat's KD part,
pred_mimicking_loss_single; mmdet/models/losses/kd_loss.py: kd_quality_focal_loss and
knowledge_distillation_kl_div_loss with class_reduction='sum'; RetinaNet's box KD is mmdet's
GIoULoss, as their config names it). Identical heads, weights, FPN features and boxes, in
float64: the losses and the gradients w.r.t. the student's FPN features (through its head to
the crossing point) and the student head's parameters agree to rtol 1e-9 / atol 1e-12 (their
GFL `.float()` on box predictions, an AMP upcast, is kept as an upcast only: see `up`).
Then: the authors' held features are post-ReLU (their in-place ReLU), the pre_activation
option, errors, and the shapes-det demo config through a Distiller (random teacher). At the
end, the ATSS and FCOS heads against the authors' crosskd_atss.py / crosskd_fcos.py (same
commit, same tolerance; FCOS with and without norm_on_bbox)."""
import os.path as osp

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.config import Config, ConfigDict
from mmengine.registry import DefaultScope

import mmkd.methods.crosskd  # noqa: F401  (registers CrossKD)
from mmkd.methods.crosskd import CrossKD
from mmkd.recorders import ModuleRecorder, RecordPoint, expand_points

from conftest import DEMO, DET, build, random_teacher_checkpoint

SIZE, STRIDES, TOL = 64, (8, 16), dict(rtol=1e-9, atol=1e-12)
DEMO_CFG = osp.join(DEMO, 'shapes_det', 'crosskd_gfl_r34-wide_r18-tiny_fpn_shapes.py')
BOXES = [[[4.0, 6.0, 30.0, 28.0], [36.0, 30.0, 60.0, 62.0]], [[10.0, 10.0, 50.0, 44.0]]]
COMMON = dict(num_classes=3, in_channels=8, feat_channels=8, stacked_convs=4)
GFL = dict(COMMON, type='GFLHead', reg_max=4,
           norm_cfg=dict(type='GN', num_groups=4, requires_grad=True),
           anchor_generator=dict(type='AnchorGenerator', ratios=[1.0], octave_base_scale=2,
                                 scales_per_octave=1, strides=list(STRIDES)),
           train_cfg=dict(assigner=dict(type='ATSSAssigner', topk=9), allowed_border=-1,
                          pos_weight=-1, debug=False))
RETINA = dict(COMMON, type='RetinaHead',
              anchor_generator=dict(type='AnchorGenerator', octave_base_scale=2,
                                    scales_per_octave=1, ratios=[0.5, 1.0, 2.0],
                                    strides=list(STRIDES)),
              train_cfg=dict(assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5,
                                           neg_iou_thr=0.4, min_pos_iou=0, ignore_iof_thr=-1),
                             sampler=dict(type='PseudoSampler'), allowed_border=-1,
                             pos_weight=-1, debug=False))
POINTS = dict(gfl=('gn', ['bbox_head.gfl_cls', 'bbox_head.scales.*']),
              retina=('conv', ['bbox_head.retina_cls', 'bbox_head.retina_reg']))


class Detector(nn.Module):
    def __init__(self, head):
        super().__init__()
        self.bbox_head = head


def detector(cfg, seed, teacher=False, **extra):
    import mmdet.models  # noqa: F401  (registers the heads)
    from mmdet.registry import MODELS
    torch.manual_seed(seed)
    cfg = dict(cfg, **extra)
    cfg['train_cfg'] = ConfigDict(cfg['train_cfg'])
    with DefaultScope.overwrite_default_scope('mmdet'):
        head = MODELS.build(cfg)
    for m in head.modules():  # random convs, non-trivial GN affine and biases
        if isinstance(m, (nn.GroupNorm, nn.Conv2d)):
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0, 0.2)
            if m.bias is not None:
                nn.init.normal_(m.bias, 0, 0.3)
    model = Detector(head).double()
    if teacher:
        model.requires_grad_(False).eval()
    return model


def samples(boxes_per_image=BOXES):
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


def fpn(seed, n=2):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, 8, SIZE // s, SIZE // s, generator=g, dtype=torch.float64)
            for s in STRIDES]


# ------------------------------------------------------------------ the authors', written out
# One change: their (and mmdet GFLHead's) `.float()` on the box predictions, an fp16 -> fp32
# upcast under AMP, would cast this float64 test down to float32; `up` keeps float64 (as
# mmkd's CrossKD does) and is `.float()` for every other dtype.
def up(x):
    return x if x.dtype == torch.float64 else x.float()


def authors_forward_crosskd_single(x, scale, module, idx, kind):
    cls_feat, reg_feat = x, x
    cls_feat_hold, reg_feat_hold = x, x
    for i, cls_conv in enumerate(module.bbox_head.cls_convs):
        cls_feat = cls_conv(cls_feat, activate=False)
        if i + 1 == idx:
            cls_feat_hold = cls_feat
        cls_feat = cls_conv.activate(cls_feat)
    for i, reg_conv in enumerate(module.bbox_head.reg_convs):
        reg_feat = reg_conv(reg_feat, activate=False)
        if i + 1 == idx:
            reg_feat_hold = reg_feat
        reg_feat = reg_conv.activate(reg_feat)
    if kind == 'gfl':
        cls_score = module.bbox_head.gfl_cls(cls_feat)
        bbox_pred = up(scale(module.bbox_head.gfl_reg(reg_feat)))
    else:
        cls_score = module.bbox_head.retina_cls(cls_feat)
        bbox_pred = module.bbox_head.retina_reg(reg_feat)
    return cls_score, bbox_pred, cls_feat_hold, reg_feat_hold


def authors_align_scale(stu_feat, tea_feat):
    N, C, H, W = stu_feat.size()
    stu_feat = stu_feat.permute(1, 0, 2, 3).reshape(C, -1)
    stu_mean = stu_feat.mean(dim=-1, keepdim=True)
    stu_std = stu_feat.std(dim=-1, keepdim=True)
    stu_feat = (stu_feat - stu_mean) / (stu_std + 1e-6)
    tea_feat = tea_feat.permute(1, 0, 2, 3).reshape(C, -1)
    tea_mean = tea_feat.mean(dim=-1, keepdim=True)
    tea_std = tea_feat.std(dim=-1, keepdim=True)
    stu_feat = stu_feat * tea_std + tea_mean
    return stu_feat.reshape(C, N, H, W).permute(1, 0, 2, 3)


def authors_reuse_teacher_head(tea_cls_feat, tea_reg_feat, stu_cls_feat, stu_reg_feat, scale,
                               teacher, idx, kind):
    reused_cls_feat = authors_align_scale(stu_cls_feat, tea_cls_feat)
    reused_reg_feat = authors_align_scale(stu_reg_feat, tea_reg_feat)
    if idx != 0:
        reused_cls_feat = F.relu(reused_cls_feat)
        reused_reg_feat = F.relu(reused_reg_feat)
    module = teacher.bbox_head
    for i in range(idx, module.stacked_convs):
        reused_cls_feat = module.cls_convs[i](reused_cls_feat)
        reused_reg_feat = module.reg_convs[i](reused_reg_feat)
    if kind == 'gfl':
        return (module.gfl_cls(reused_cls_feat),
                up(scale(module.gfl_reg(reused_reg_feat))))
    return module.retina_cls(reused_cls_feat), module.retina_reg(reused_reg_feat)


def authors_kd_quality_focal_loss(pred, target, weight, beta, avg_factor):
    """kd_loss.py kd_quality_focal_loss, reduction 'mean' with avg_factor (mmdet's
    weight_reduce_loss: sum / (avg_factor + eps))."""
    num_classes = pred.size(1)
    weight = weight[:, None].repeat(1, num_classes)
    target = target.detach().sigmoid()
    loss = F.binary_cross_entropy_with_logits(pred, target, reduction='none')
    loss = loss * torch.abs(pred.sigmoid() - target).pow(beta)
    return (loss * weight).sum() / (avg_factor + torch.finfo(torch.float32).eps)


def authors_kl_sum(pred, soft_label, weight, T, avg_factor):
    """knowledge_distillation_kl_div_loss, class_reduction='sum', reduction 'mean'."""
    target = F.softmax(soft_label / T, dim=1).detach()
    kd = F.kl_div(F.log_softmax(pred / T, dim=1), target, reduction='none').sum(1) * (T * T)
    return (kd * weight).sum() / (avg_factor + torch.finfo(torch.float32).eps)


def authors_losses(student, teacher, s_fpn, t_fpn, data, kind, idx=3, pre_activation=False):
    """The authors' loss() up to loss_by_feat's KD terms (their kd_cfg defaults)."""
    from mmdet.models.utils import images_to_levels, multi_apply, unpack_gt_instances
    from mmdet.models.losses import GIoULoss
    from mmdet.structures.bbox import cat_boxes
    from mmdet.utils import reduce_mean
    head = student.bbox_head

    def run(x, scale, module, idx, kind):
        if not pre_activation:
            return authors_forward_crosskd_single(x, scale, module, idx, kind)
        # their evident intent: the hold before the ReLU (made out of place for the call)
        convs = [getattr(module.bbox_head, n)[idx - 1] for n in ('cls_convs', 'reg_convs')]
        for conv in convs:
            conv.activate.inplace = False
        try:
            return authors_forward_crosskd_single(x, scale, module, idx, kind)
        finally:
            for conv in convs:
                conv.activate.inplace = True

    with torch.no_grad():
        tea = multi_apply(run, t_fpn, list(teacher.bbox_head.scales) if kind == 'gfl'
                          else [None] * len(t_fpn), module=teacher, idx=idx, kind=kind)
    tea_cls_scores, tea_bbox_preds, tea_cls_hold, tea_reg_hold = tea
    stu = multi_apply(run, s_fpn, list(head.scales) if kind == 'gfl' else [None] * len(s_fpn),
                      module=student, idx=idx, kind=kind)
    reused_cls_scores, reused_bbox_preds = [], []
    for lvl in range(len(s_fpn)):
        scale = teacher.bbox_head.scales[lvl] if kind == 'gfl' else None
        c, b = authors_reuse_teacher_head(tea_cls_hold[lvl], tea_reg_hold[lvl], stu[2][lvl],
                                          stu[3][lvl], scale, teacher, idx, kind)
        reused_cls_scores.append(c)
        reused_bbox_preds.append(b)
    gts, ignores, metas = unpack_gt_instances(data)
    anchor_list, valid = head.get_anchors([c.shape[-2:] for c in stu[0]], metas, device='cpu')
    targets = head.get_targets(anchor_list, valid, gts, metas, batch_gt_instances_ignore=ignores)
    losses_cls_kd, losses_reg_kd = [], []
    if kind == 'gfl':
        label_weights_list, avg_factor = targets[2], targets[5]
        avg_factor = reduce_mean(torch.tensor(avg_factor, dtype=torch.float)).item()
        kd_avg_factor = 0
        for tea_cls_score, tea_bbox_pred, reused_cls_score, reused_bbox_pred, label_weights in \
                zip(tea_cls_scores, tea_bbox_preds, reused_cls_scores, reused_bbox_preds,
                    label_weights_list):
            tea_cls_score = tea_cls_score.permute(0, 2, 3, 1).reshape(-1, head.cls_out_channels)
            reused_cls_score = reused_cls_score.permute(0, 2, 3, 1).reshape(
                -1, head.cls_out_channels)
            label_weights = label_weights.reshape(-1)
            losses_cls_kd.append(authors_kd_quality_focal_loss(
                reused_cls_score, tea_cls_score, label_weights, 1.0, avg_factor))
            reg_max = head.reg_max
            tea_bbox_pred = tea_bbox_pred.permute(0, 2, 3, 1).reshape(-1, reg_max + 1)
            reused_bbox_pred = reused_bbox_pred.permute(0, 2, 3, 1).reshape(-1, reg_max + 1)
            reg_weights = tea_cls_score.max(dim=1)[0].sigmoid()
            reg_weights[label_weights == 0] = 0
            losses_reg_kd.append(4.0 * authors_kl_sum(
                reused_bbox_pred, tea_bbox_pred, reg_weights[:, None].expand(-1, 4).reshape(-1),
                1, 4.0))
            kd_avg_factor = kd_avg_factor + reg_weights.sum()
        losses_reg_kd = [x / kd_avg_factor for x in losses_reg_kd]
    else:
        label_weights_list, avg_factor = targets[1], targets[4]
        num_level_anchors = [a.size(0) for a in anchor_list[0]]
        all_anchor_list = images_to_levels([cat_boxes(a) for a in anchor_list],
                                           num_level_anchors)
        giou = GIoULoss(loss_weight=1.0)
        coder = head.bbox_coder
        for tea_cls_score, tea_bbox_pred, reused_cls_score, reused_bbox_pred, anchors, \
                label_weights in zip(tea_cls_scores, tea_bbox_preds, reused_cls_scores,
                                     reused_bbox_preds, all_anchor_list, label_weights_list):
            tea_cls_score = tea_cls_score.permute(0, 2, 3, 1).reshape(-1, head.cls_out_channels)
            reused_cls_score = reused_cls_score.permute(0, 2, 3, 1).reshape(
                -1, head.cls_out_channels)
            label_weights = label_weights.reshape(-1)
            losses_cls_kd.append(authors_kd_quality_focal_loss(
                reused_cls_score, tea_cls_score, label_weights, 1.0, avg_factor))
            tea_bbox_pred = tea_bbox_pred.permute(0, 2, 3, 1).reshape(-1, coder.encode_size)
            reused_bbox_pred = reused_bbox_pred.permute(0, 2, 3, 1).reshape(
                -1, coder.encode_size)
            anchors = anchors.reshape(-1, anchors.size(-1))
            tea_bbox_pred = coder.decode(anchors, tea_bbox_pred)
            reused_bbox_pred = coder.decode(anchors, reused_bbox_pred)
            reg_weights = tea_cls_score.max(dim=1)[0].sigmoid()
            reg_weights[label_weights == 0] = 0
            losses_reg_kd.append(giou(reused_bbox_pred, tea_bbox_pred, reg_weights,
                                      avg_factor=avg_factor))
    return sum(losses_cls_kd), sum(losses_reg_kd)


# ------------------------------------------------------------------ ours, as the distiller runs it
def record(model, points, fpn_feats, grad):
    """Run mmdet's own head forward with mmkd's recorder on the block's points."""
    points = [p for spec in points for p in (
        expand_points(spec, model) if '*' in spec else [RecordPoint(spec)])]
    recorder = ModuleRecorder(model, points)
    recorder.start()
    with torch.set_grad_enabled(grad):
        model.bbox_head(fpn_feats)
    recorder.finish()
    values = [recorder.get(p) for p in points]
    recorder.remove()
    return values


def our_losses(method, student, teacher, s_fpn, t_fpn, data, kind, idx=3):
    norm, preds = POINTS[kind]
    crossing = [f'bbox_head.{b}_convs.{idx - 1}.{norm}' for b in ('cls', 'reg')]
    s_vals = record(student, crossing, s_fpn, grad=True)
    t_vals = record(teacher, crossing + preds, t_fpn, grad=False)
    return method(s_vals, t_vals, data)


def bound(student, teacher, **kwargs):
    method = CrossKD(**kwargs)
    method.bind_student(student)
    method.bind_teachers({'teacher': teacher})
    return method


@pytest.mark.parametrize('kind', ['gfl', 'retina'])
@pytest.mark.parametrize('pre_activation', [False, True])
def test_crosskd_equals_the_authors_loss_and_gradients(kind, pre_activation):
    cfg = GFL if kind == 'gfl' else RETINA
    student, teacher = detector(cfg, 0), detector(cfg, 1, teacher=True)
    t_fpn, data = fpn(1), samples()
    s_a = [x.requires_grad_() for x in fpn(0)]
    cls_a, reg_a = authors_losses(student, teacher, s_a, t_fpn, data, kind,
                                  pre_activation=pre_activation)
    (cls_a + reg_a).backward()
    grads_a = [None if p.grad is None else p.grad.clone() for p in student.parameters()]
    assert sum(g is not None for g in grads_a) >= 6  # the convs up to the crossing
    student.zero_grad()

    method = bound(student, teacher, pre_activation=pre_activation)
    s_b = [x.requires_grad_() for x in fpn(0)]
    ours = our_losses(method, student, teacher, s_b, t_fpn, data, kind)
    assert set(ours) == {'loss_cls_kd', 'loss_reg_kd'}
    assert cls_a.dtype == torch.float64 and cls_a.item() > 0 and reg_a.item() > 0
    torch.testing.assert_close(ours['loss_cls_kd'], cls_a, **TOL)
    torch.testing.assert_close(ours['loss_reg_kd'], reg_a, **TOL)
    (ours['loss_cls_kd'] + ours['loss_reg_kd']).backward()
    for a, b in zip(s_a, s_b):
        assert a.grad.abs().sum() > 0
        torch.testing.assert_close(b.grad, a.grad, **TOL)
    for ga, p in zip(grads_a, student.parameters()):
        assert (ga is None) == (p.grad is None)
        if ga is not None:
            torch.testing.assert_close(p.grad, ga, **TOL)
    assert all(p.grad is None for p in teacher.parameters())
    # the crossing ReLU was made out of place only for pre_activation
    assert student.bbox_head.cls_convs[2].activate.inplace is not pre_activation


def test_the_authors_held_features_are_post_relu():
    """Their hold is `conv(x, activate=False)`, then the ConvModule's in-place ReLU overwrites
    it: what reaches align_scale has no negative value (why pre_activation=False is their
    computation, and the default)."""
    student = detector(GFL, 0)
    x = fpn(0)[0]
    hold = authors_forward_crosskd_single(x, student.bbox_head.scales[0], student, 3, 'gfl')[2]
    pre = student.bbox_head.cls_convs[2](student.bbox_head.cls_convs[1](
        student.bbox_head.cls_convs[0](x)), activate=False)
    assert pre.min() < 0 and hold.min() == 0
    torch.testing.assert_close(hold, F.relu(pre))


def test_defaults_and_reg_weight_per_head():
    student, teacher = detector(GFL, 0), detector(GFL, 1, teacher=True)
    method = bound(student, teacher)
    assert (method.idx, method.loss_cls_weight, method.beta, method.tau) == (3, 1.0, 1.0, 1.0)
    assert method.loss_reg_weight == 4.0 and method.kind == 'gfl'
    assert method.paths['reg'].names == ('bbox_head.reg_convs.3', 'bbox_head.gfl_reg',
                                         'bbox_head.scales')
    r_student, r_teacher = detector(RETINA, 0), detector(RETINA, 1, teacher=True)
    assert bound(r_student, r_teacher).loss_reg_weight == 1.0
    assert bound(r_student, r_teacher, loss_reg_weight=2.0).loss_reg_weight == 2.0
    assert list(method.parameters()) == []  # the teacher is not a sub-module


def test_crossing_at_zero_runs_the_whole_teacher_head():
    student, teacher = detector(GFL, 0), detector(GFL, 1, teacher=True)
    method = bound(student, teacher, reused_teacher_head_idx=0)
    s_fpn, t_fpn = fpn(0), fpn(1)
    cls_a, reg_a = authors_losses(student, teacher, s_fpn, t_fpn, samples(), 'gfl', idx=0)
    t_preds = record(teacher, POINTS['gfl'][1], t_fpn, grad=False)
    ours = method([tuple(s_fpn), tuple(s_fpn)], [tuple(t_fpn), tuple(t_fpn)] + t_preds,
                  samples())
    torch.testing.assert_close(ours['loss_cls_kd'], cls_a, **TOL)
    torch.testing.assert_close(ours['loss_reg_kd'], reg_a, **TOL)


def test_errors_name_what_to_change():
    student, teacher = detector(GFL, 0), detector(GFL, 1, teacher=True)
    with pytest.raises(ValueError, match='has 4 stacked convs'):
        bound(student, teacher, reused_teacher_head_idx=5)
    with pytest.raises(ValueError, match='RetinaHead.*one kind'):
        bound(student, detector(RETINA, 1, teacher=True))
    with pytest.raises(ValueError, match='reg_max'):
        bound(student, detector(GFL, 1, teacher=True, reg_max=6))
    with pytest.raises(ValueError, match='GFLHead'):
        CrossKD().bind_student(Detector(nn.Conv2d(1, 1, 1)))
    with pytest.raises(ValueError, match='tau'):
        CrossKD(tau=0.5)
    method = bound(student, teacher)
    s = record(student, ['bbox_head.cls_convs.2.gn', 'bbox_head.reg_convs.2.gn'], fpn(0), True)
    t = record(teacher, ['bbox_head.cls_convs.2.gn', 'bbox_head.reg_convs.2.gn']
               + POINTS['gfl'][1], fpn(1), False)
    with pytest.raises(ValueError, match=r'\[cls, reg\]'):
        method.build(s[0][0], t)  # one tensor, not [cls, reg]
    with pytest.raises(ValueError, match='feat_channels'):
        method.build(s, [tuple(x[:, :4] for x in t[0])] + t[1:])
    with pytest.raises(ValueError, match='must be equal'):
        method.build(s, t[:3] + t[4:])
    with pytest.raises(ValueError, match='gt_instances'):
        method(s, t, None)
    # pre_activation=True, and values recorded while the ReLU was still in place
    pre = bound(student, teacher, pre_activation=True)
    with pytest.raises(ValueError, match='modified in place'):
        pre.build(s, t)


def det_samples(boxes):
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    out = []
    for b in boxes:
        s = DetDataSample(metainfo=dict(img_shape=(64, 64), pad_shape=(64, 64),
                                        batch_input_shape=(64, 64), scale_factor=(1.0, 1.0)))
        s.gt_instances = InstanceData(bboxes=torch.tensor(b, dtype=torch.float32),
                                      labels=torch.zeros(len(b), dtype=torch.long))
        out.append(s)
    return out


def test_demo_config_builds_and_takes_a_loss_step(tmp_path):
    """The shapes-det GFL demo pair through a Distiller: build (random teacher weights), one
    loss step; gradients reach the student's head below the crossing and its backbone, never
    the teacher."""
    ckpt = random_teacher_checkpoint(DET['teacher_gfl'], str(tmp_path / 't.pth'))
    cfg = Config.fromfile(DEMO_CFG)
    cfg.model.teacher.checkpoint = ckpt
    torch.manual_seed(0)
    distiller = build(cfg.model, 'mmdet')
    method = distiller.blocks['crosskd'].method
    assert method.kind == 'gfl' and method.idx == 1
    losses = distiller(torch.randn(2, 3, 64, 64),
                       det_samples([[[4.0, 4.0, 30.0, 30.0]], [[20.0, 30.0, 50.0, 60.0]]]),
                       mode='loss')
    assert {'student.loss_cls', 'distill.crosskd.loss_cls_kd',
            'distill.crosskd.loss_reg_kd'} <= set(losses)
    kd = losses['distill.crosskd.loss_cls_kd'] + losses['distill.crosskd.loss_reg_kd']
    assert torch.isfinite(kd) and kd > 0
    kd.backward()
    head = distiller.student.bbox_head
    assert head.cls_convs[0].conv.weight.grad.abs().sum() > 0
    assert head.reg_convs[0].conv.weight.grad.abs().sum() > 0
    assert head.cls_convs[1].conv.weight.grad is None  # after the crossing: KD does not reach
    assert distiller.student.backbone.conv1.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in distiller.teacher.parameters())


def test_the_conv_module_output_is_the_same_record_point_by_default():
    """With the authors' post-ReLU crossing, recording the ConvModule's output or its norm's
    output (which the in-place ReLU overwrites) gives the same losses."""
    student, teacher = detector(GFL, 0), detector(GFL, 1, teacher=True)
    method = bound(student, teacher)
    s_fpn, t_fpn, data = fpn(0), fpn(1), samples()
    by_norm = our_losses(method, student, teacher, s_fpn, t_fpn, data, 'gfl')
    crossing = ['bbox_head.cls_convs.2', 'bbox_head.reg_convs.2']
    by_module = method(record(student, crossing, s_fpn, True),
                       record(teacher, crossing + POINTS['gfl'][1], t_fpn, False), data)
    for key in by_norm:
        torch.testing.assert_close(by_module[key], by_norm[key], **TOL)


# ------------------------------------------------------------------ ATSS and FCOS
# The authors' CrossKDATSS (crosskd_atss.py) and CrossKDFCOS (crosskd_fcos.py) at 87e156a4,
# written out below: forward_hkd_single, reuse_teacher_head, loss_by_feat's KD terms and
# pred_imitation_loss_single (ATSS); kd_cfg from configs/crosskd/crosskd_r50_atss_r101_fpn_1x_
# coco.py (KDQualityFocalLoss beta 1 weight 1, GIoULoss 1, CrossEntropyLoss(use_sigmoid) 1,
# k = 3) and crosskd_r50_fcos_r101-2x-ms_caffe_fpn_gn-head_2x_ms_coco.py (KDQualityFocalLoss
# beta 1 weight 0.4, IoULoss 0.75, k = 2). Same tolerance (rtol 1e-9 / atol 1e-12, float64).
# The centerness KD is mmdet's CrossEntropyLoss (theirs and ours), whose binary_cross_entropy
# casts the soft label and the weights to float32 (`label.float()`, `weight.float()`): written
# out with the same casts, so the comparison stays exact.
ATSS = dict(COMMON, type='ATSSHead',
            norm_cfg=dict(type='GN', num_groups=4, requires_grad=True),
            anchor_generator=dict(type='AnchorGenerator', ratios=[1.0], octave_base_scale=2,
                                  scales_per_octave=1, strides=list(STRIDES)),
            bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.0, 0.0, 0.0, 0.0],
                            target_stds=[0.1, 0.1, 0.2, 0.2]),
            loss_bbox=dict(type='GIoULoss', loss_weight=2.0),
            train_cfg=dict(assigner=dict(type='ATSSAssigner', topk=9), allowed_border=-1,
                           pos_weight=-1, debug=False))
FCOS = dict(COMMON, type='FCOSHead', strides=list(STRIDES), regress_ranges=((-1, 16), (16, 1e8)),
            norm_cfg=dict(type='GN', num_groups=4, requires_grad=True),
            loss_bbox=dict(type='IoULoss', loss_weight=1.0), train_cfg=dict())
FCOS_NORM = dict(FCOS, norm_on_bbox=True, centerness_on_reg=True)
PREDS = dict(atss=['bbox_head.atss_cls', 'bbox_head.scales.*', 'bbox_head.atss_centerness'],
             fcos=['bbox_head.conv_cls', 'bbox_head.scales.*'])


def authors_forward_hkd_single(x, scale, stride, module, idx, kind):
    head = module.bbox_head
    cls_feat, reg_feat = x, x
    cls_feat_hold, reg_feat_hold = x, x
    for i, cls_conv in enumerate(head.cls_convs):
        cls_feat = cls_conv(cls_feat, activate=False)
        if i + 1 == idx:
            cls_feat_hold = cls_feat
        cls_feat = cls_conv.activate(cls_feat)
    for i, reg_conv in enumerate(head.reg_convs):
        reg_feat = reg_conv(reg_feat, activate=False)
        if i + 1 == idx:
            reg_feat_hold = reg_feat
        reg_feat = reg_conv.activate(reg_feat)
    if kind == 'atss':
        cls_score = head.atss_cls(cls_feat)
        bbox_pred = up(scale(head.atss_reg(reg_feat)))
        centerness = head.atss_centerness(reg_feat)
        return cls_score, bbox_pred, centerness, cls_feat_hold, reg_feat_hold
    cls_score = head.conv_cls(cls_feat)
    bbox_pred = up(scale(head.conv_reg(reg_feat)))
    centerness = head.conv_centerness(reg_feat if head.centerness_on_reg else cls_feat)
    if head.norm_on_bbox:
        bbox_pred = bbox_pred.clamp(min=0)
        if not head.training:
            bbox_pred *= stride
    else:
        bbox_pred = bbox_pred.exp()
    return cls_score, bbox_pred, centerness, cls_feat_hold, reg_feat_hold


def authors_reuse_teacher_head_v2(tea_cls_feat, tea_reg_feat, stu_cls_feat, stu_reg_feat,
                                  scale, stride, teacher, idx, kind):
    reused_cls_feat = authors_align_scale(stu_cls_feat, tea_cls_feat)
    reused_reg_feat = authors_align_scale(stu_reg_feat, tea_reg_feat)
    if idx != 0:
        reused_cls_feat = F.relu(reused_cls_feat)
        reused_reg_feat = F.relu(reused_reg_feat)
    module = teacher.bbox_head
    for i in range(idx, module.stacked_convs):
        reused_cls_feat = module.cls_convs[i](reused_cls_feat)
        reused_reg_feat = module.reg_convs[i](reused_reg_feat)
    if kind == 'atss':
        return (module.atss_cls(reused_cls_feat), up(scale(module.atss_reg(reused_reg_feat))),
                module.atss_centerness(reused_reg_feat))
    reused_cls_score = module.conv_cls(reused_cls_feat)
    reused_bbox_pred = up(scale(module.conv_reg(reused_reg_feat)))
    reused_centerness = module.conv_centerness(
        reused_reg_feat if module.centerness_on_reg else reused_cls_feat)
    if module.norm_on_bbox:
        reused_bbox_pred = reused_bbox_pred.clamp(min=0)
        if not module.training:
            reused_bbox_pred *= stride
    else:
        reused_bbox_pred = reused_bbox_pred.exp()
    return reused_cls_score, reused_bbox_pred, reused_centerness


def authors_kd_qfl_no_weight(pred, target, beta, avg_factor):
    target = target.detach().sigmoid()
    loss = F.binary_cross_entropy_with_logits(pred, target, reduction='none')
    loss = loss * torch.abs(pred.sigmoid() - target).pow(beta)
    return loss.sum() / (avg_factor + torch.finfo(torch.float32).eps)


def authors_center_bce(pred, label, avg_factor):
    """mmdet CrossEntropyLoss(use_sigmoid=True) with a soft label of pred's shape: its
    binary_cross_entropy (valid mask label >= 0, `.float()` casts), mean with avg_factor."""
    weight = ((label >= 0) & (label != -100)).float()
    loss = F.binary_cross_entropy_with_logits(pred, label.float(), reduction='none')
    return (loss * weight).sum() / (avg_factor + torch.finfo(torch.float32).eps)


def authors_losses_v2(student, teacher, s_fpn, t_fpn, data, kind, idx):
    """CrossKDATSS / CrossKDFCOS loss() up to the KD terms of loss_by_feat."""
    from mmdet.models.losses import GIoULoss, IoULoss
    from mmdet.models.utils import multi_apply, unpack_gt_instances
    from mmdet.utils import reduce_mean
    head = student.bbox_head
    strides = list(getattr(teacher.bbox_head, 'strides', [None] * len(s_fpn)))
    with torch.no_grad():
        tea = multi_apply(authors_forward_hkd_single, t_fpn, list(teacher.bbox_head.scales),
                          strides, module=teacher, idx=idx, kind=kind)
    tea_cls_scores, tea_bbox_preds, tea_centernesses, tea_cls_hold, tea_reg_hold = tea
    stu = multi_apply(authors_forward_hkd_single, s_fpn, list(head.scales), strides,
                      module=student, idx=idx, kind=kind)
    reused = multi_apply(authors_reuse_teacher_head_v2, tea_cls_hold, tea_reg_hold, stu[3],
                         stu[4], list(teacher.bbox_head.scales), strides, teacher=teacher,
                         idx=idx, kind=kind)
    reused_cls_scores, reused_bbox_preds, reused_centernesses = reused
    gts, ignores, metas = unpack_gt_instances(data)
    if kind == 'atss':
        anchor_list, valid = head.get_anchors([c.shape[-2:] for c in stu[0]], metas,
                                              device='cpu')
        (anchor_list, labels_list, label_weights_list, _, _, avg_factor) = head.get_targets(
            anchor_list, valid, gts, metas, batch_gt_instances_ignore=ignores)
        avg_factor = reduce_mean(torch.tensor(avg_factor, dtype=torch.float)).item()
        giou = GIoULoss(loss_weight=1.0)
        coder = head.bbox_coder
        out = [], [], []
        for labels, anchors, tea_cls_score, tea_bbox_pred, tea_centernesses, \
                reused_cls_score, reused_bbox_pred, reused_centernesses_, label_weights in zip(
                    labels_list, anchor_list, tea_cls_scores, tea_bbox_preds, tea_centernesses,
                    reused_cls_scores, reused_bbox_preds, reused_centernesses,
                    label_weights_list):
            c = head.cls_out_channels
            tea_cls_score = tea_cls_score.permute(0, 2, 3, 1).reshape(-1, c)
            reused_cls_score = reused_cls_score.permute(0, 2, 3, 1).reshape(-1, c)
            label_weights = label_weights.reshape(-1)
            out[0].append(authors_kd_quality_focal_loss(
                reused_cls_score, tea_cls_score, label_weights, 1.0, avg_factor))
            tea_bbox_pred = tea_bbox_pred.permute(0, 2, 3, 1).reshape(-1, coder.encode_size)
            reused_bbox_pred = reused_bbox_pred.permute(0, 2, 3, 1).reshape(
                -1, coder.encode_size)
            anchors = anchors.reshape(-1, anchors.size(-1))
            tea_bbox_pred = coder.decode(anchors, tea_bbox_pred)
            reused_bbox_pred = coder.decode(anchors, reused_bbox_pred)
            reg_weights = tea_cls_score.max(dim=1)[0].sigmoid()
            reg_weights[label_weights == 0] = 0
            out[1].append(giou(reused_bbox_pred, tea_bbox_pred, weight=reg_weights,
                               avg_factor=avg_factor))
            labels = labels.reshape(-1)
            pos_inds = ((labels >= 0) & (labels < head.num_classes)).nonzero().squeeze(1)
            tea_centernesses = tea_centernesses.permute(0, 2, 3, 1).reshape(-1)
            reused_centernesses_ = reused_centernesses_.permute(0, 2, 3, 1).reshape(-1)
            if len(pos_inds) > 0:
                out[2].append(authors_center_bce(reused_centernesses_[pos_inds],
                                                 tea_centernesses[pos_inds].sigmoid(),
                                                 avg_factor))
            else:
                out[2].append(reused_centernesses_.new_tensor(0.))
        return tuple(sum(x) for x in out)
    # FCOS
    featmap_sizes = [f.size()[-2:] for f in stu[0]]
    all_level_points = head.prior_generator.grid_priors(featmap_sizes, dtype=stu[1][0].dtype,
                                                        device='cpu')
    labels, bbox_targets = head.get_targets(all_level_points, gts)
    num_imgs = stu[0][0].size(0)
    flatten_labels = torch.cat(labels)
    flatten_bbox_targets = torch.cat(bbox_targets)
    flatten_points = torch.cat([points.repeat(num_imgs, 1) for points in all_level_points])
    pos_inds = ((flatten_labels >= 0)
                & (flatten_labels < head.num_classes)).nonzero().reshape(-1)
    pos_centerness_targets = head.centerness_target(flatten_bbox_targets[pos_inds])
    pos_centerness_denorm = max(reduce_mean(pos_centerness_targets.sum().detach()), 1e-6)
    c = head.cls_out_channels
    flatten_tea_cls_scores = torch.cat([x.permute(0, 2, 3, 1).reshape(-1, c)
                                        for x in tea_cls_scores])
    flatten_tea_bbox_preds = torch.cat([x.permute(0, 2, 3, 1).reshape(-1, 4)
                                        for x in tea_bbox_preds])
    flatten_reused_cls_scores = torch.cat([x.permute(0, 2, 3, 1).reshape(-1, c)
                                           for x in reused_cls_scores])
    flatten_reused_bbox_preds = torch.cat([x.permute(0, 2, 3, 1).reshape(-1, 4)
                                           for x in reused_bbox_preds])
    losses_cls_kd = 0.4 * authors_kd_qfl_no_weight(
        flatten_reused_cls_scores, flatten_tea_cls_scores, 1.0, pos_centerness_denorm)
    flatten_tea_bbox_preds = head.bbox_coder.decode(flatten_points, flatten_tea_bbox_preds)
    flatten_reused_bbox_preds = head.bbox_coder.decode(flatten_points,
                                                       flatten_reused_bbox_preds)
    reg_weights = flatten_tea_cls_scores.max(dim=1)[0].sigmoid()
    losses_reg_kd = IoULoss(loss_weight=0.75)(flatten_reused_bbox_preds, flatten_tea_bbox_preds,
                                              weight=reg_weights,
                                              avg_factor=pos_centerness_denorm)
    return losses_cls_kd, losses_reg_kd


@pytest.mark.parametrize('kind, cfg', [('atss', ATSS), ('fcos', FCOS), ('fcos', FCOS_NORM)],
                         ids=['atss', 'fcos', 'fcos-norm_on_bbox'])
def test_atss_fcos_equal_the_authors_loss_and_gradients(kind, cfg):
    idx = 3 if kind == 'atss' else 2  # the authors' configs; also CrossKD's defaults
    student, teacher = detector(cfg, 0), detector(cfg, 1, teacher=True)
    t_fpn, data = fpn(1), samples()
    s_a = [x.requires_grad_() for x in fpn(0)]
    theirs = authors_losses_v2(student, teacher, s_a, t_fpn, data, kind, idx)
    sum(theirs).backward()
    grads_a = [None if p.grad is None else p.grad.clone() for p in student.parameters()]
    assert sum(g is not None for g in grads_a) >= 4  # the convs up to the crossing
    student.zero_grad()

    method = bound(student, teacher)
    assert method.idx == idx
    s_b = [x.requires_grad_() for x in fpn(0)]
    crossing = [f'bbox_head.{b}_convs.{idx - 1}.gn' for b in ('cls', 'reg')]
    s_vals = record(student, crossing, s_b, grad=True)
    t_vals = record(teacher, crossing + PREDS[kind], t_fpn, grad=False)
    ours = method(s_vals, t_vals, data)
    keys = ['loss_cls_kd', 'loss_reg_kd'] + (['loss_center_kd'] if kind == 'atss' else [])
    assert list(ours) == keys
    for key, value in zip(keys, theirs):
        assert value.item() > 0, key
        torch.testing.assert_close(ours[key], value, **TOL)
    sum(ours.values()).backward()
    for a, b in zip(s_a, s_b):
        assert a.grad.abs().sum() > 0
        torch.testing.assert_close(b.grad, a.grad, **TOL)
    for ga, p in zip(grads_a, student.parameters()):
        assert (ga is None) == (p.grad is None)
        if ga is not None:
            torch.testing.assert_close(p.grad, ga, **TOL)
    assert all(p.grad is None for p in teacher.parameters())


def test_atss_fcos_defaults_and_paths():
    a = bound(detector(ATSS, 0), detector(ATSS, 1, teacher=True))
    assert (a.kind, a.idx, a.loss_cls_weight, a.loss_reg_weight, a.loss_center_weight) == (
        'atss', 3, 1.0, 1.0, 1.0)
    assert a.paths['reg_convs'].names == ('bbox_head.reg_convs.3',)
    assert a.paths['reg'].names == ('bbox_head.atss_reg', 'bbox_head.scales')
    assert a.paths['center'].names == ('bbox_head.atss_centerness',)
    f = bound(detector(FCOS, 0), detector(FCOS, 1, teacher=True))
    assert (f.kind, f.idx, f.loss_cls_weight, f.loss_reg_weight) == ('fcos', 2, 0.4, 0.75)
    assert f.paths['reg'].names == ('bbox_head.reg_convs.2', 'bbox_head.reg_convs.3',
                                    'bbox_head.conv_reg', 'bbox_head.scales')
    g = bound(detector(FCOS, 0), detector(FCOS, 1, teacher=True), reused_teacher_head_idx=3,
              loss_cls_weight=1.0)
    assert (g.idx, g.loss_cls_weight) == (3, 1.0)
    with pytest.raises(ValueError, match='norm_on_bbox'):
        bound(detector(FCOS, 0), detector(FCOS_NORM, 1, teacher=True))
    with pytest.raises(ValueError, match='one kind'):
        bound(detector(ATSS, 0), detector(GFL, 1, teacher=True))
    # ATSS crossing after the last conv: no teacher reg conv runs, the predictors do
    s, t = detector(ATSS, 0), detector(ATSS, 1, teacher=True)
    m = bound(s, t, reused_teacher_head_idx=4)
    assert 'reg_convs' not in m.paths
    crossing = ['bbox_head.cls_convs.3.gn', 'bbox_head.reg_convs.3.gn']
    out = m(record(s, crossing, fpn(0), True), record(t, crossing + PREDS['atss'], fpn(1),
                                                      False), samples())
    assert all(torch.isfinite(v) for v in out.values())
