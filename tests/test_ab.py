"""AB (activation boundaries) against the authors' formulation (loss and gradient, float64),
a hand case, and its first stage through the digits distiller: the stage boundary of a
``Step`` loss-weight schedule, which terms are on and which parameters move on each side.

The authors' code read: HobbitLong/RepDistiller ``distiller_zoo/AB.py`` (``ABLoss``),
``models/util.py`` (``Connector``, ``ConvReg``) and ``helper/pretrain.py`` (``init``) at
b84f547; open-mmlab/mmrazor ``mmrazor/models/losses/ab_loss.py`` at 0fe347f (the same
per-level loss).
"""
import pytest
import torch
import torch.nn as nn
from mmengine.logging import MessageHub

import mmkd.methods.ab  # noqa: F401  (registers AB until mmkd.methods imports it)
from mmkd.methods.ab import AB

TOL = dict(rtol=1e-10, atol=1e-12)  # float64: the two formulations differ only by rounding


# ------------------------------------------------------------ the authors' formulation
class AuthorsABLoss(nn.Module):
    """RepDistiller's ABLoss, written out: per level the alternative L2 summed over elements,
    times 2 ** (i - L + 1), divided by the batch size, then / 1000 * 3; a list per level."""

    def __init__(self, feat_num, margin=1.0):
        super().__init__()
        self.w = [2 ** (i - feat_num + 1) for i in range(feat_num)]
        self.margin = margin

    def forward(self, g_s, g_t):
        bsz = g_s[0].shape[0]
        losses = [self.criterion_alternative_l2(s, t) for s, t in zip(g_s, g_t)]
        losses = [w * loss for w, loss in zip(self.w, losses)]
        losses = [loss / bsz for loss in losses]
        return [loss / 1000 * 3 for loss in losses]

    def criterion_alternative_l2(self, source, target):
        m = self.margin
        loss = ((source + m) ** 2 * ((source > -m) & (target <= 0)).float()
                + (source - m) ** 2 * ((source <= m) & (target > 0)).float())
        return torch.abs(loss).sum()


class AuthorsConvReg(nn.Module):
    """RepDistiller's ConvReg(use_relu=False): conv sized from the shapes, then BN."""

    def __init__(self, s_shape, t_shape):
        super().__init__()
        _, s_c, s_h, s_w = s_shape
        _, t_c, t_h, t_w = t_shape
        if s_h == 2 * t_h:
            self.conv = nn.Conv2d(s_c, t_c, kernel_size=3, stride=2, padding=1)
        elif s_h * 2 == t_h:
            self.conv = nn.ConvTranspose2d(s_c, t_c, kernel_size=4, stride=2, padding=1)
        else:
            self.conv = nn.Conv2d(s_c, t_c, kernel_size=(1 + s_h - t_h, 1 + s_w - t_w))
        self.bn = nn.BatchNorm2d(t_c)

    def forward(self, x):
        return self.bn(self.conv(x))


def authors_connector(s_shapes, t_shapes):
    """RepDistiller's Connector: identity where channels and height match, else ConvReg."""
    return nn.ModuleList([nn.Sequential() if s[1] == t[1] and s[2] == t[2]
                          else AuthorsConvReg(s, t) for s, t in zip(s_shapes, t_shapes)])


# ------------------------------------------------------------ fidelity
@pytest.mark.parametrize('margin', [1.0, 0.5])
def test_ab_equals_the_authors_loss_and_gradient_in_float64(margin):
    torch.manual_seed(0)
    # levels: a wider teacher (ConvReg), a half-size student map (strided conv) and equal
    # shapes (identity), shallow to deep
    s_shapes = [(6, 4, 8, 8), (6, 8, 8, 8), (6, 16, 2, 2)]
    t_shapes = [(6, 8, 8, 8), (6, 16, 4, 4), (6, 16, 2, 2)]
    s = [torch.randn(sh, dtype=torch.float64, requires_grad=True) for sh in s_shapes]
    t = [torch.randn(sh, dtype=torch.float64) for sh in t_shapes]
    ours = AB(margin=margin)
    ours.build(s, t)
    ours.double()
    theirs = authors_connector(s_shapes, t_shapes).double()
    assert [type(c).__name__ for c in ours.connectors] == ['ConvReg', 'ConvReg', 'Identity']
    assert isinstance(theirs[2], nn.Sequential) and len(theirs[2]) == 0
    for mine, their in zip(ours.connectors[:2], theirs[:2]):  # identical weights
        their.conv.load_state_dict(mine[0].state_dict())
        their.bn.load_state_dict(mine[1].state_dict())
    out = ours(s, t)
    grads = torch.autograd.grad(out['loss_ab'], s)

    s2 = [x.detach().clone().requires_grad_(True) for x in s]
    ref = sum(AuthorsABLoss(len(s2), margin)([c(x) for c, x in zip(theirs, s2)], t))
    ref_grads = torch.autograd.grad(ref, s2)
    torch.testing.assert_close(out['loss_ab'], ref, **TOL)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, **TOL)
    assert 0 <= float(out['ab_agreement']) <= 1


def test_ab_by_hand_and_level_weights():
    # one level, identity connector, N = 1: elements (s, t) and their terms with m = 1:
    # (0.5, -1) -> (1.5)^2 = 2.25 ; (-2, -1) -> 0 (beyond -m) ; (0.5, 1) -> (-0.5)^2 = 0.25 ;
    # (2, 1) -> 0 (beyond +m)  => 2.5 * 3 / 1000
    s = torch.tensor([0.5, -2.0, 0.5, 2.0], dtype=torch.float64).view(1, 1, 2, 2)
    t = torch.tensor([-1.0, -1.0, 1.0, 1.0], dtype=torch.float64).view(1, 1, 2, 2)
    m = AB()
    m.build(s, t)
    out = m(s, t)
    assert float(out['loss_ab']) == pytest.approx(2.5 * 0.003, rel=1e-12)
    assert float(out['ab_agreement']) == pytest.approx(0.75)  # 3 of 4 on the same side
    # two equal levels: default weights 0.5 and 1; explicit weights replace them
    m1 = AB()
    m1.build([s, s], [t, t])
    assert float(m1([s, s], [t, t])['loss_ab']) == pytest.approx(1.5 * 2.5 * 0.003)
    m2 = AB(level_weights=[0.25, 0.5])
    m2.build([s, s], [t, t])
    assert float(m2([s, s], [t, t])['loss_ab']) == pytest.approx(0.75 * 2.5 * 0.003)
    with pytest.raises(ValueError, match='level_weights'):
        AB(level_weights=[1.0]).build([s, s], [t, t])
    with pytest.raises(ValueError, match=r'\(N, C, H, W\)'):
        AB().build(torch.randn(2, 4), torch.randn(2, 4))


# ------------------------------------------------------------ the stage boundary
def test_ab_init_stage_boundary_through_the_digits_distiller(teacher_ckpts):
    """Step(milestones=[2], gamma=0): iterations 1-2 are AB's initialisation stage (the AB
    term on, its gradient reaching the student and the connectors), iterations 3-4 train
    without it (weight 0, no AB gradient anywhere, connectors left as they are)."""
    from conftest import batch, build, digits_cfg
    points_s = [f'backbone.layer{k}.1.bn2' for k in (1, 2, 3, 4)]  # pre-ReLU, pre-residual
    points_t = ['backbone.layer1.2.bn2', 'backbone.layer2.3.bn2', 'backbone.layer3.5.bn2',
                'backbone.layer4.2.bn2']
    torch.manual_seed(0)
    model = build(digits_cfg(teacher_ckpts['digits'], blocks=dict(ab=dict(
        student=points_s, teacher=points_t, method=dict(type='AB'),
        loss_weight=dict(type='Step', value=1.0, milestones=[2], gamma=0.0)))))
    model.train()
    method = model.methods['ab']
    assert all(type(c).__name__ == 'ConvReg' for c in method.connectors)  # wider teacher
    student_params = [p for p in model.student.backbone.parameters()]
    conn_params = list(method.parameters())
    opt = torch.optim.SGD(model.parameters(), lr=0.05)  # no momentum, no weight decay
    hub = MessageHub.get_current_instance()
    inputs, samples = batch(n=8, size=16)
    try:
        for it in range(4):  # the Runner's 0-based counter; the schedule's t = it + 1
            hub.update_info('iter', it)
            losses = model(inputs, samples, mode='loss')
            stage1 = it < 2
            assert float(losses['distill.ab.weight']) == (1.0 if stage1 else 0.0)
            ab_term = losses['distill.ab.loss_ab']
            assert (float(ab_term.detach()) > 0) == stage1
            g_student = torch.autograd.grad(ab_term, student_params, retain_graph=True,
                                            allow_unused=True)
            g_conn = torch.autograd.grad(ab_term, conn_params, retain_graph=True)
            moved = any(g is not None and g.abs().sum() > 0 for g in g_student)
            assert moved == stage1, it
            assert any(g.abs().sum() > 0 for g in g_conn) == stage1, it
            before = [p.detach().clone() for p in conn_params]
            loss, _ = model.parse_losses(losses)
            opt.zero_grad()
            loss.backward()
            opt.step()
            changed = any(not torch.equal(b, p) for b, p in zip(before, conn_params))
            assert changed == stage1, it  # connectors: trained in stage 1, untouched after
    finally:
        hub.update_info('iter', 0)

