"""SRRL (Yang et al., ICLR 2021) against the authors' formulation (jingyang2017/KD_SRRL at
d2e802f: ``train_imagenet_distillation.py`` train loop, ``distiller_zoo/AIN.py``
``transfer_conv`` / ``statm_loss``, ``models/official_resnet.py`` forward with ``feat_s``), with
identical connector and classifier weights: loss and gradient w.r.t. the student's feature map
in float64 (tolerance: rtol 1e-10, atol 1e-12); the teacher stays frozen and unregistered;
errors; one step through the digits distiller."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import mmkd.methods.srrl  # noqa: F401  (registers SRRL until mmkd.methods imports it)
from mmkd.methods.srrl import SRRL

TOL = dict(rtol=1e-10, atol=1e-12)


class TinyTeacher(nn.Module):
    def __init__(self, c_t=6, k=5):
        super().__init__()
        self.backbone = nn.Conv2d(3, c_t, 1)
        self.head = nn.Module()
        self.head.fc = nn.Linear(c_t, k)


def bound(teacher, s, t, **kwargs):
    method = SRRL(**kwargs)
    method.bind_teachers({'teacher': teacher})
    method.build(s, t)
    return method


def authors_srrl(feat_s, feat_t, connector, fc, weight=1.0):
    """The authors' training step, written out: connector on the map, ``statm_loss`` (the
    squared gap of the spatial means, mean over channels, then over samples), the teacher's
    ``avgpool -> flatten -> fc`` on the connected map, ``loss_stat + mse(pred_sc, pred_t) *
    weight``; ``pred_t`` is the teacher's own output (its fc on its pooled map)."""
    feat_s = connector(feat_s)
    x = feat_s.view(feat_s.size(0), feat_s.size(1), -1)
    y = feat_t.view(feat_t.size(0), feat_t.size(1), -1)
    loss_stat = (x.mean(dim=2) - y.mean(dim=2)).pow(2).mean(1).mean()
    pred_sc = fc(torch.flatten(nn.AdaptiveAvgPool2d((1, 1))(feat_s), 1))
    with torch.no_grad():
        pred_t = fc(torch.flatten(nn.AdaptiveAvgPool2d((1, 1))(feat_t), 1))
    return loss_stat + F.mse_loss(pred_sc, pred_t) * weight


def test_srrl_equals_the_authors_formulation_loss_and_gradient():
    torch.manual_seed(0)
    teacher = TinyTeacher().double()
    s = torch.randn(8, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    t = torch.randn(8, 6, 2, 2, dtype=torch.float64).relu()
    method = bound(teacher, (s.detach(), ), (t, )).double()  # 'backbone': a tuple of one
    out = method((s, ), (t, ))
    assert set(out) == {'loss_srrl_feat', 'loss_srrl_sr'}
    # The authors' connector with the same weights (train mode: BN on batch statistics).
    conv = nn.Conv2d(4, 6, 1, bias=False)
    ref_connector = nn.Sequential(conv, nn.BatchNorm2d(6), nn.ReLU()).double()
    ref_connector.load_state_dict(method.connector.state_dict())
    s2 = s.detach().clone().requires_grad_()
    ref = authors_srrl(s2, t, ref_connector, teacher.head.fc)
    torch.testing.assert_close(sum(out.values()), ref, **TOL)
    sum(out.values()).backward()
    ref.backward()
    torch.testing.assert_close(s.grad, s2.grad, **TOL)
    for (name, p), (_, q) in zip(method.connector.named_parameters(),
                                 ref_connector.named_parameters()):
        torch.testing.assert_close(p.grad, q.grad, **TOL, msg=name)
    # The weights scale the two terms; the teacher's classifier never receives a gradient
    # from SRRL (here it requires grad: only the reference above gave it one).
    teacher.head.fc.weight.grad = None
    out2 = bound(teacher, s.detach(), t, feat_weight=0.5, sr_weight=3.0).double()
    out2.connector.load_state_dict(method.connector.state_dict())
    res = out2(s.detach(), t)
    torch.testing.assert_close(res['loss_srrl_feat'], 0.5 * out['loss_srrl_feat'].detach(), **TOL)
    torch.testing.assert_close(res['loss_srrl_sr'], 3.0 * out['loss_srrl_sr'].detach(), **TOL)
    sum(res.values()).backward()
    assert teacher.head.fc.weight.grad is None


def test_srrl_connector_init_pooled_features_and_what_is_registered():
    torch.manual_seed(1)
    teacher = TinyTeacher(c_t=64)
    method = bound(teacher, torch.randn(4, 8), torch.randn(4, 64))  # pooled, e.g. 'neck'
    conv, bn, _ = method.connector
    assert conv.weight.shape == (64, 8, 1, 1) and conv.bias is None
    # the authors' init: normal(0, sqrt(2 / (1 * 1 * out_channels))), BN weight 1, bias 0
    assert conv.weight.std().item() == pytest.approx((2 / 64) ** 0.5, rel=0.15)
    assert bn.weight.eq(1).all() and bn.bias.eq(0).all()
    out = method(torch.randn(4, 8), torch.randn(4, 64))
    assert all(torch.isfinite(v) for v in out.values())
    # the teacher's classifier is not a sub-module: no teacher tensor in the method's state
    assert all(k.startswith('connector.') for k in method.state_dict()), list(method.state_dict())


def test_srrl_errors_name_the_classifier_and_the_choices():
    with pytest.raises(ValueError, match=r"classifier.*'head.cls'.*Valid choices.*'head.fc'"):
        SRRL(classifier='head.cls').bind_teachers({'teacher': TinyTeacher()})
    with pytest.raises(ValueError, match='one teacher'):
        SRRL().bind_teachers({'a': TinyTeacher(), 'b': TinyTeacher()})
    with pytest.raises(RuntimeError, match='bind_teachers'):
        SRRL().build(torch.randn(2, 4), torch.randn(2, 6))
    with pytest.raises(ValueError, match=r'does not take the teacher.s pooled feature \(N, 7\)'):
        bound(TinyTeacher(c_t=6), torch.randn(2, 4), torch.randn(2, 7))
    with pytest.raises(ValueError, match='one penultimate feature'):
        bound(TinyTeacher(), (torch.randn(2, 4), torch.randn(2, 4)), torch.randn(2, 6))
    with pytest.raises(ValueError, match='sr_weight must be'):
        SRRL(sr_weight=-1.0)


def test_srrl_builds_and_trains_in_the_digits_distiller(teacher_ckpts):
    from conftest import batch, build, digits_cfg
    model = build(digits_cfg(teacher_ckpts['digits'], blocks=dict(
        srrl=dict(student='backbone', teacher='backbone', method=dict(type='SRRL'),
                 loss_weight=1.0))))
    losses = model(*batch(n=6, size=16), mode='loss')
    assert {'distill.srrl.loss_srrl_feat', 'distill.srrl.loss_srrl_sr'} <= set(losses), \
        sorted(losses)
    loss = sum(v for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(loss)
    loss.backward()
    method = model.methods['srrl']
    assert method.connector[0].weight.grad is not None
    assert not any(k.startswith('methods.srrl.') and 'connector' not in k
                   for k in model.state_dict())
    with pytest.raises(Exception, match="'head.fcx'.*Valid choices.*'head.fc'"):
        build(digits_cfg(teacher_ckpts['digits'], blocks=dict(srrl=dict(
            student='backbone', teacher='backbone',
            method=dict(type='SRRL', classifier='head.fcx'), loss_weight=1.0))))
