"""OFD against the authors' formulation (clovaai/overhaul-distillation at 76344a8,
``CIFAR-100/distiller.py``; mdistiller a08d46f ``distillers/OFD.py``), the margin read from the
bound teacher's BNs, the record-point checks, and one step in the digits distiller."""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from scipy.stats import norm

import mmkd.methods.ofd  # noqa: F401  (registers OFD until mmkd/methods/__init__.py imports it)
from mmkd.methods.ofd import OFD, margin_from_bn

# float64 throughout: loss and gradient agree to rounding.
RTOL, ATOL = 1e-10, 1e-12


# ---- the authors' formulation, written out -----------------------------------------------
def authors_margin(bn):
    """clovaai ``get_margin_from_BN``: bn.weight as std, bn.bias as mean, scipy norm.cdf,
    per-channel Python floats (kept in float64 here instead of their FloatTensor)."""
    margin = []
    for s, m in zip(bn.weight.data, bn.bias.data):
        s, m = abs(s.item()), m.item()
        if norm.cdf(-m / s) > 0.001:
            margin.append(-s * math.exp(-(m / s) ** 2 / 2) / math.sqrt(2 * math.pi)
                          / norm.cdf(-m / s) + m)
        else:
            margin.append(-3 * s)
    return torch.tensor(margin, dtype=torch.float64).view(1, -1, 1, 1)


def authors_distillation_loss(source, target, margin):
    """clovaai ``distillation_loss``."""
    target = torch.max(target, margin)
    loss = F.mse_loss(source, target, reduction='none')
    loss = loss * ((source > target) | (target > 0)).float()
    return loss.sum()


def mdistiller_feat_loss(source, target, margin):
    """mdistiller ``feat_loss`` (three masked cases, ``mean(dim=0).sum()``)."""
    loss = ((source - margin) ** 2 * ((source > margin) & (target <= margin)).float()
            + (source - target) ** 2 * ((source > target) & (target > margin)
                                        & (target <= 0)).float()
            + (source - target) ** 2 * (target > 0).float())
    return torch.abs(loss).mean(dim=0).sum()


def authors_forward(connectors, s_feats, t_feats, t_bns, loss_fn):
    """clovaai ``Distiller.forward`` + the training script's ``/ batch_size`` (the ``/ 1000``
    is our block's loss_weight)."""
    feat_num = len(t_feats)
    loss = 0
    for i in range(feat_num):
        s = connectors[i](s_feats[i])
        loss = loss + loss_fn(s, t_feats[i].detach(), authors_margin(t_bns[i])) \
            / 2 ** (feat_num - i - 1)
    return loss


# ---- helpers -------------------------------------------------------------------------------
class TinyTeacher(nn.Module):
    """Holds the BNs whose affine parameters give the margins (weights of both signs, some
    channels with a negligible negative mass, i.e. the -3 std branch)."""

    def __init__(self, channels=(6, 8)):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        self.bns = nn.ModuleList(nn.BatchNorm2d(c) for c in channels)
        g = torch.Generator().manual_seed(1)
        for bn in self.bns:
            c = bn.num_features
            bn.weight.data = torch.randn(c, generator=g, dtype=torch.float64)
            bn.bias.data = torch.randn(c, generator=g, dtype=torch.float64) * 2
            bn.bias.data[0] = 10.0 * abs(bn.weight.data[0])  # Phi(-10) < 0.001
            bn.double()


def make_ofd(teacher, **kwargs):
    names = [f'bns.{i}' for i in range(len(teacher.bns))]
    ofd = OFD(teacher_bns=names, **kwargs)
    ofd.bind_student(nn.Identity())
    ofd.bind_teachers({'teacher': teacher})
    return ofd


def features(seed=0):
    g = torch.Generator().manual_seed(seed)
    s = [torch.randn(4, 5, 6, 6, generator=g, dtype=torch.float64),
         torch.randn(4, 7, 3, 3, generator=g, dtype=torch.float64)]
    t = [torch.randn(4, 6, 6, 6, generator=g, dtype=torch.float64) * 2,
         torch.randn(4, 8, 3, 3, generator=g, dtype=torch.float64) * 2]
    return s, t


# ---- fidelity ------------------------------------------------------------------------------
def test_margin_equals_the_authors_get_margin_from_bn():
    teacher = TinyTeacher()
    for bn in teacher.bns:
        ours = margin_from_bn(bn.weight, bn.bias)
        assert torch.allclose(ours.view(1, -1, 1, 1), authors_margin(bn), rtol=RTOL, atol=ATOL)
        assert (ours < 0).all()
    assert torch.equal(margin_from_bn(teacher.bns[0].weight, teacher.bns[0].bias)[0],
                       -3 * teacher.bns[0].weight.abs()[0])


@pytest.mark.parametrize('reference', ['clovaai', 'mdistiller'])
def test_loss_and_gradient_equal_the_authors(reference):
    torch.manual_seed(0)
    teacher = TinyTeacher()
    ofd = make_ofd(teacher)
    s, t = features()
    ofd.build(s, t)
    ofd.double()
    ofd.train()
    s_ours = [x.clone().requires_grad_() for x in s]
    s_ref = [x.clone().requires_grad_() for x in s]
    out = ofd(s_ours, t)
    if reference == 'clovaai':
        ref = authors_forward(ofd.connectors, s_ref, t, teacher.bns,
                              authors_distillation_loss) / s[0].shape[0]
    else:
        ref = authors_forward(ofd.connectors, s_ref, t, teacher.bns, mdistiller_feat_loss)
    assert out['loss_ofd'].dtype == torch.float64
    assert torch.allclose(out['loss_ofd'], ref, rtol=RTOL, atol=ATOL), (out['loss_ofd'], ref)
    out['loss_ofd'].backward()
    ref.backward()
    for a, b in zip(s_ours, s_ref):
        assert torch.allclose(a.grad, b.grad, rtol=RTOL, atol=ATOL)
    # the masks do something: some teacher values are clipped and some elements dropped
    m = margin_from_bn(teacher.bns[0].weight, teacher.bns[0].bias).view(1, -1, 1, 1)
    assert (t[0] < m).any() and ((t[0] <= 0) & (t[0] > m)).any()
    assert 'ofd_margin' in out and 'loss' not in 'ofd_margin'


def test_connector_is_the_authors_conv1x1_bn():
    torch.manual_seed(0)
    ofd = make_ofd(TinyTeacher())
    s, t = features()
    ofd.build([x.float() for x in s], [x.float() for x in t])
    conv, bn = ofd.connectors[1]
    assert conv.kernel_size == (1, 1) and conv.bias is None and conv.out_channels == 8
    assert isinstance(bn, nn.BatchNorm2d) and torch.equal(bn.weight, torch.ones(8))
    assert abs(conv.weight.std().item() - math.sqrt(2 / 8)) < 0.25


# ---- the margin comes from the bound teacher ------------------------------------------------
def test_margin_is_read_from_the_bound_teachers_bn_affine_parameters():
    teacher = TinyTeacher()
    ofd = make_ofd(teacher)
    s, t = features()
    ofd.build(s, t)
    ofd.double()
    before = [m.clone() for m in ofd.margins()]
    loss0 = ofd(s, t)['loss_ofd']
    # the running statistics describe the BN's input: the authors' margin ignores them
    teacher.bns[1].running_mean += 3.0
    teacher.bns[1].running_var *= 5.0
    assert all(torch.equal(a, b) for a, b in zip(before, ofd.margins()))
    # the affine parameters are the BN output's mean and std: the margin follows them
    with torch.no_grad():
        teacher.bns[1].bias -= 1.0
        teacher.bns[1].weight *= 2.0
    after = ofd.margins()
    assert torch.equal(before[0], after[0]) and not torch.allclose(before[1], after[1])
    assert torch.allclose(after[1].view(1, -1, 1, 1), authors_margin(teacher.bns[1]))
    assert not torch.allclose(ofd(s, t)['loss_ofd'], loss0)


def test_teacher_bn_errors_name_the_module_and_the_choices():
    teacher = TinyTeacher()
    with pytest.raises(ValueError, match=r"'bns.5', not a module of it; .*: bns\.0, bns\.1"):
        OFD(teacher_bns=['bns.5']).bind_teachers({'teacher': teacher})
    ofd = OFD(teacher_bns=['conv'])
    with pytest.raises(ValueError, match=r"'conv', a Conv2d, not a BatchNorm.*bns\.0, bns\.1"):
        ofd.bind_teachers({'teacher': teacher})
    with pytest.raises(ValueError, match='one teacher'):
        OFD(teacher_bns=['bns.0']).bind_teachers({'a': teacher, 'b': teacher})
    with pytest.raises(ValueError, match='student_bns'):
        OFD(teacher_bns=['bns.0'], apply_bn=True)
    with pytest.raises(ValueError, match='level_weights has 1 entries'):
        OFD(teacher_bns=['bns.0', 'bns.1'], level_weights=[1.0])
    ofd = make_ofd(teacher)
    s, t = features()
    with pytest.raises(ValueError, match='student gives 1 levels, teacher 1'):
        ofd.build(s[:1], t[:1])
    with pytest.raises(ValueError, match=r"teacher BN 'bns.1' has 8 channels"):
        ofd.build(s, [t[0], t[0]])


def test_a_tensor_overwritten_in_place_after_recording_is_refused():
    ofd = make_ofd(TinyTeacher())
    s, t = features()
    t[1] = t[1].clone()
    t[1].relu_()  # what a ReLU(inplace=True) after the recorded BN does
    with pytest.raises(ValueError, match='level 1: the teacher tensor was modified in place'):
        ofd.build(s, t)


def test_apply_bn_gives_the_bn_output_and_leaves_running_stats_alone():
    """apply_bn: the recorded BN input through the bound BN equals what that BN produced, in
    value and in gradient (student in training mode: batch statistics)."""
    torch.manual_seed(0)
    teacher, student = TinyTeacher().eval(), TinyTeacher((5, 7)).train()
    names_s = ['bns.0', 'bns.1']
    ofd = OFD(teacher_bns=['bns.0', 'bns.1'], student_bns=names_s, apply_bn=True)
    ofd.bind_student(student)
    ofd.bind_teachers({'teacher': teacher})
    s_in, t_in = features(1)
    ofd.build(s_in, t_in)
    ofd.double()
    ofd.train()
    stats = [bn.running_mean.clone() for bn in student.bns]
    a = [x.clone().requires_grad_() for x in s_in]
    b = [x.clone().requires_grad_() for x in s_in]
    ours = ofd(a, t_in)['loss_ofd']
    assert all(torch.equal(x, bn.running_mean) for x, bn in zip(stats, student.bns))
    ref_s = [bn(x) for bn, x in zip(student.bns, b)]  # the student's own BN forward
    with torch.no_grad():
        ref_t = [bn(x) for bn, x in zip(teacher.bns, t_in)]
    ref = sum(w * authors_distillation_loss(c(x), y, authors_margin(bn)) / 4
              for w, c, x, y, bn in zip((0.5, 1.0), ofd.connectors, ref_s, ref_t, teacher.bns))
    assert torch.allclose(ours, ref, rtol=RTOL, atol=ATOL)
    ours.backward()
    ref.backward()
    for x, y in zip(a, b):
        assert torch.allclose(x.grad, y.grad, rtol=RTOL, atol=ATOL)


# ---- in the distiller ----------------------------------------------------------------------
STAGES = ('layer2', 'layer3', 'layer4')


def _ofd_block(apply_bn, last=(1, 1, 1), last_t=(3, 5, 2)):
    s = [f'backbone.{k}.{j}.bn2' for k, j in zip(STAGES, last)]
    t = [f'backbone.{k}.{j}.bn2' for k, j in zip(STAGES, last_t)]
    method = dict(type='OFD', teacher_bns=t)
    if apply_bn:
        method.update(student_bns=s, apply_bn=True)
        s, t = [p + '@input' for p in s], [p + '@input' for p in t]
    return dict(feat=dict(student=s, teacher=t, method=method, loss_weight=1e-3))


def test_ofd_builds_and_trains_in_the_digits_distiller(teacher_ckpts):
    from conftest import batch, build, digits_cfg
    model = build(digits_cfg(teacher_ckpts['digits'], blocks=_ofd_block(apply_bn=True)))
    losses = model(*batch(n=6, size=16), mode='loss')
    assert {'distill.feat.loss_ofd', 'distill.feat.ofd_margin'} <= set(losses), sorted(losses)
    loss = sum(v for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(loss) and losses['distill.feat.loss_ofd'] > 0
    loss.backward()
    conn = model.methods['feat'].connectors
    assert conn[0][0].weight.grad is not None
    assert [c[0].out_channels for c in conn] == [32, 64, 128]


def test_recording_mmpretrain_resnets_bn2_output_is_refused(teacher_ckpts):
    """mmpretrain's BasicBlock adds the identity into bn2's output and applies an in-place
    ReLU: the recorded tensor is overwritten, which the method detects."""
    from conftest import build, digits_cfg
    with pytest.raises(Exception, match='modified in place'):
        build(digits_cfg(teacher_ckpts['digits'], blocks=_ofd_block(apply_bn=False)))


def test_cifar_backbones_give_the_pre_relu_points_the_configs_record():
    """CifarResNet's bn2 output is not overwritten (the residual sum is a new tensor), so the
    CIFAR ResNet configs record it directly; CifarWideResNet's final_norm.0 output is (in-place
    ReLU), so the WRN config records the BN inputs and applies the BNs."""
    from mmkd.models.backbones.cifar_resnet import CifarBasicBlock
    from mmkd.models.backbones.cifar_wide_resnet import CifarWideResNet
    block, seen = CifarBasicBlock(4, 4).eval(), {}
    block.bn2.register_forward_hook(lambda m, a, o: seen.update(bn2=(o, o.clone())))
    block(torch.randn(2, 4, 5, 5))
    out, copy = seen['bn2']
    assert out._version == 0 and torch.equal(out, copy) and (out < 0).any()
    wrn, seen = CifarWideResNet(depth=10, widen_factor=1).eval(), {}
    wrn.final_norm[0].register_forward_hook(lambda m, a, o: seen.update(out=o))
    wrn.final_norm[0].register_forward_pre_hook(lambda m, a: seen.update({'in': a[0]}))
    wrn(torch.randn(2, 3, 8, 8))
    assert seen['out']._version > 0 and seen['in']._version == 0
