"""ReviewKD against the authors' formulation (ABF fusion + HCL: loss and gradient w.r.t. the
student's features, float64, identical weights), the HCL by hand, the ABFs' sizes, errors,
and a build + loss step through the digits distiller (the ABFs are the method's, not the
student's: in the checkpoint under ``methods.``, never in the exported student).

The authors' code read: dvlab-research/ReviewKD ``CIFAR-100/model/reviewkd.py`` (``ABF``,
``ReviewKD.forward``, ``hcl``, ``build_review_kd``) and ``ImageNet/models/reviewkd.py`` at
cede6ea, and megvii-research/mdistiller ``mdistiller/distillers/ReviewKD.py`` (``ABF``,
``hcl_loss``, ``ReviewKD.forward_train``; the same formulas, with ``out_shapes``) at
a08d46f10d6102bd6e3f258ca5ac880b020ea259.
"""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import mmkd.methods.reviewkd  # noqa: F401  (registration)
from mmkd.methods.reviewkd import ReviewKD, hcl

TOL = dict(rtol=1e-10, atol=1e-12)  # float64: the same operations in the same order


class AuthorsABF(nn.Module):
    """mdistiller's / the authors' CIFAR ``ABF``, written out."""

    def __init__(self, in_channel, mid_channel, out_channel, fuse):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(in_channel, mid_channel, kernel_size=1, bias=False),
                                   nn.BatchNorm2d(mid_channel))
        self.conv2 = nn.Sequential(
            nn.Conv2d(mid_channel, out_channel, kernel_size=3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(out_channel))
        self.att_conv = nn.Sequential(nn.Conv2d(mid_channel * 2, 2, kernel_size=1),
                                      nn.Sigmoid()) if fuse else None

    def forward(self, x, y=None, shape=None, out_shape=None):
        n, _, h, w = x.shape
        x = self.conv1(x)
        if self.att_conv is not None:
            y = F.interpolate(y, (shape, shape), mode='nearest')
            z = torch.cat([x, y], dim=1)
            z = self.att_conv(z)
            x = x * z[:, 0].view(n, 1, h, w) + y * z[:, 1].view(n, 1, h, w)
        if x.shape[-1] != out_shape:
            x = F.interpolate(x, (out_shape, out_shape), mode='nearest')
        y = self.conv2(x)
        return y, x


def authors_hcl(fstudent, fteacher):
    """The authors' ``hcl`` / mdistiller's ``hcl_loss``, written out."""
    loss_all = 0.0
    for fs, ft in zip(fstudent, fteacher):
        n, c, h, w = fs.shape
        loss = F.mse_loss(fs, ft, reduction='mean')
        cnt = 1.0
        tot = 1.0
        for l in [4, 2, 1]:  # noqa: E741
            if l >= h:
                continue
            tmpfs = F.adaptive_avg_pool2d(fs, (l, l))
            tmpft = F.adaptive_avg_pool2d(ft, (l, l))
            cnt /= 2.0
            loss += F.mse_loss(tmpfs, tmpft, reduction='mean') * cnt
            tot += cnt
        loss = loss / tot
        loss_all = loss_all + loss
    return loss_all


def authors_reviewkd(abfs, feats, pooled, teacher, shapes, out_shapes):
    """mdistiller's ``forward_train``: ``x = feats + [pooled[..., None, None]]`` reversed
    (deepest first), ``abfs`` deepest first (their ``abfs[::-1]``), results shallow to deep,
    then ``hcl_loss(results, teacher)``."""
    x = feats + [pooled.unsqueeze(-1).unsqueeze(-1)]
    x = x[::-1]
    results = []
    out_features, res_features = abfs[0](x[0], out_shape=out_shapes[0])
    results.append(out_features)
    for features, abf, shape, out_shape in zip(x[1:], abfs[1:], shapes[1:], out_shapes[1:]):
        out_features, res_features = abf(features, res_features, shape, out_shape)
        results.insert(0, out_features)
    return authors_hcl(results, teacher)


def authors_copy(method):
    """The authors' ABFs (deepest first) holding our method's weights."""
    abfs = []
    for ours in reversed(list(method.abfs)):
        c_in = ours.conv1[0].in_channels
        mid, c_out = ours.conv1[0].out_channels, ours.conv2[0].out_channels
        theirs = AuthorsABF(c_in, mid, c_out, ours.att_conv is not None).double()
        theirs.load_state_dict(ours.state_dict())
        abfs.append(theirs)
    return abfs


def perturb_(module):
    """Non-trivial BN affine parameters and attention bias, so every weight matters."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(1 + 0.3 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=g))
            if isinstance(m, nn.Conv2d) and m.bias is not None:
                m.bias.copy_(0.5 * torch.randn(m.bias.shape, generator=g))


# (student channels, student sizes, teacher channels, teacher sizes); the last level is the
# pooled vector (N, C). First: resnet8x4 <- resnet32x4 shrunk (same sizes; mdistiller's
# shapes [1, 8, 16, 32]); second: a student at half the teacher's resolution (mdistiller's
# shufflev1 <- resnet32x4: shapes [1, 4, 8, 16], out_shapes [1, 8, 16, 32]).
CASES = [((8, 16, 24, 24), (8, 4, 2), (12, 20, 40, 40), (8, 4, 2)),
         ((6, 12, 20, 20), (4, 2, 1), (8, 16, 32, 32), (8, 4, 2))]


@pytest.mark.parametrize('case', CASES)
@pytest.mark.parametrize('mode', ['train', 'eval'])
def test_reviewkd_equals_the_authors_loss_and_gradient(case, mode):
    (cs, ss, ct, st) = case
    torch.manual_seed(0)
    n = 4
    feats = [torch.randn(n, c, h, h, dtype=torch.float64) for c, h in zip(cs[:-1], ss)]
    pooled = torch.randn(n, cs[-1], dtype=torch.float64)
    teacher = [torch.randn(n, c, h, h, dtype=torch.float64) for c, h in zip(ct[:-1], st)]
    t_pooled = torch.randn(n, ct[-1], dtype=torch.float64)
    student = [x.clone().requires_grad_() for x in feats + [pooled]]

    method = ReviewKD()
    method.build(tuple(student), tuple(teacher + [t_pooled]))
    method.double()
    perturb_(method)
    # mid width: min(512, the deepest student level's channels), the authors' rule
    assert method.abfs[0].conv1[0].out_channels == cs[-1]
    assert [a.att_conv is not None for a in method.abfs] == [True] * 3 + [False]
    abfs = authors_copy(method)
    getattr(method, mode)()
    for a in abfs:
        getattr(a, mode)()

    out = method(tuple(student), tuple(teacher + [t_pooled]))
    assert out['loss_reviewkd'].dtype == torch.float64
    assert {'hcl_level0', 'hcl_level3', 'attention_own'} <= set(out)

    theirs_in = [x.detach().clone().requires_grad_() for x in feats + [pooled]]
    ref = authors_reviewkd(abfs, theirs_in[:-1], theirs_in[-1],
                           teacher + [t_pooled[:, :, None, None]],
                           shapes=[1] + list(ss[::-1]), out_shapes=[1] + list(st[::-1]))
    torch.testing.assert_close(out['loss_reviewkd'], ref, **TOL)
    out['loss_reviewkd'].backward()
    ref.backward()
    for ours, theirs in zip(student, theirs_in):
        torch.testing.assert_close(ours.grad, theirs.grad, **TOL)
    # ... and w.r.t. the ABF weights (the method's own parameters)
    for (name, p), q in zip(reversed(list(method.abfs.named_children())), abfs):
        for (k, a), b in zip(p.named_parameters(), q.parameters()):
            torch.testing.assert_close(a.grad, b.grad, **TOL, msg=f'{name}.{k}')
    # the diagnostics add up to the loss
    total = sum(out[f'hcl_level{i}'] for i in range(4))
    torch.testing.assert_close(total, out['loss_reviewkd'].detach(), **TOL)


def test_hcl_by_hand():
    # 4x4 maps that differ by a constant c everywhere: every pooled MSE is c^2 too; pool sizes
    # 2 and 1 are used (4 >= 4 is skipped) with weights 1/2, 1/4: (1 + 1/2 + 1/4) c^2 / 1.75
    s = torch.zeros(2, 3, 4, 4, dtype=torch.float64)
    assert hcl(s + 3.0, s).item() == pytest.approx(9.0, rel=1e-14)
    # a zero-mean difference (a checkerboard of +-1): full MSE 1, every pool 0 -> 1 / 1.75
    board = (torch.arange(4)[:, None] + torch.arange(4)[None, :]) % 2 * 2.0 - 1.0
    d = board.to(torch.float64).expand(2, 3, 4, 4)
    assert hcl(d, s).item() == pytest.approx(1 / 1.75, rel=1e-14)
    # an 8x8 map uses 4, 2, 1 (weights 1/2, 1/4, 1/8); a 1x1 map only the MSE
    d8 = board.repeat(2, 2).to(torch.float64).expand(1, 1, 8, 8)
    assert hcl(d8, torch.zeros_like(d8)).item() == pytest.approx(1 / 1.875, rel=1e-14)
    assert hcl(torch.full((1, 2, 1, 1), 2.0), torch.zeros(1, 2, 1, 1)).item() == 4.0
    # agrees with the authors' on a random pair of levels
    a, b = torch.randn(2, 4, 8, 8, dtype=torch.float64), torch.randn(2, 4, 8, 8,
                                                                      dtype=torch.float64)
    torch.testing.assert_close(hcl(a, b) + hcl(a[..., :2, :2], b[..., :2, :2]),
                               authors_hcl([a, a[..., :2, :2]], [b, b[..., :2, :2]]), **TOL)


def test_reviewkd_sizes_and_errors():
    s = (torch.randn(2, 8, 4, 4), torch.randn(2, 600, 2, 2), torch.randn(2, 600))
    t = (torch.randn(2, 16, 4, 4), torch.randn(2, 32, 2, 2), torch.randn(2, 32))
    m = ReviewKD()
    m.build(s, t)
    assert m.abfs[0].conv1[0].out_channels == 512  # min(512, 600)
    assert m.abfs[2].conv2[0].out_channels == 32 and m.abfs[2].att_conv is None
    m = ReviewKD(mid_channels=7)
    m.build(s, t)
    assert {a.conv1[0].out_channels for a in m.abfs} == {7}
    out = m(s, t)
    out['loss_reviewkd'].backward()
    assert all(p.grad is not None for p in m.parameters())
    with pytest.raises(ValueError, match='3 levels but teacher gives 2'):
        ReviewKD().build(s, t[:2])
    with pytest.raises(ValueError, match=r'maps \(N, C, H, W\)'):
        ReviewKD().build((torch.randn(2, 3, 4),), (torch.randn(2, 3, 4),))
    with pytest.raises(ValueError, match='mid_channels'):
        ReviewKD(mid_channels=0)
    # the teacher gets no gradient
    tt = tuple(x.clone().requires_grad_() for x in t)
    m = ReviewKD()
    m.build(s, tt)
    m(s, tt)['loss_reviewkd'].backward()
    assert all(x.grad is None for x in tt)


def test_reviewkd_builds_and_trains_in_the_digits_distiller(teacher_ckpts):
    from conftest import batch, build, digits_cfg
    points = ('backbone.layer1', 'backbone.layer2', 'backbone.layer3', 'backbone.layer4',
              'neck')
    model = build(digits_cfg(teacher_ckpts['digits'], blocks=dict(
        review=dict(student=points, teacher=points, method=dict(type='ReviewKD'),
                    loss_weight=dict(type='LinearWarmup', value=5.0, warmup=20,
                                     by_epoch=True)))))
    model.train()
    losses = model(*batch(n=4, size=16), mode='loss')
    assert {'distill.review.loss_reviewkd', 'distill.review.hcl_level0',
            'distill.review.attention_own'} <= set(losses), sorted(losses)
    loss = sum(v for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(loss)
    loss.backward()
    abfs = model.methods['review'].abfs
    assert len(abfs) == 5 and all(p.grad is not None for p in abfs.parameters())
    # the ABFs are the method's: in the training checkpoint under methods.*, and not in the
    # student (extract_student.py keeps only student.*)
    keys = model.state_dict().keys()
    assert any(k.startswith('methods.review.abfs.') for k in keys)
    assert not any('abf' in k for k in model.student.state_dict())


@pytest.mark.parametrize('name, weight', [('resnet32x4_resnet8x4', 5.0),
                                          ('wrn-40-2_wrn-16-2', 5.0),
                                          ('resnet56_resnet20', 0.6)])
def test_cifar_configs_follow_the_authors_weights_and_warm_up(name, weight):
    # the authors' CIFAR-100/script/reviewKD.sh weights, warmed up as min(epoch / 20, 1) with
    # mdistiller's 1-based epochs (CFG.REVIEWKD.WARMUP_EPOCHS = 20)
    from mmengine.config import Config

    from conftest import REPO
    from mmkd.distillers.loss_weights import build_loss_weight
    cfg = Config.fromfile(f'{REPO}/configs/reviewkd/reviewkd_{name}_cifar100.py')
    block = cfg.model.blocks.review
    assert block.method.type == 'ReviewKD' and len(block.student) == len(block.teacher) == 4
    schedule = build_loss_weight(block.loss_weight, 'review')
    assert [schedule.at(t) for t in (1, 10, 20, 240)] == pytest.approx(
        [weight / 20, weight / 2, weight, weight])
