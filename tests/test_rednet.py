"""Involution against a direct loop, RedNet against the authors' parameter counts and key
layout, and its ImageNet configs."""
import glob
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmpretrain.registry import MODELS

import mmkd  # noqa: F401
from mmkd.models.backbones import Involution, RedNet, convert_rednet_checkpoint

from conftest import REPO

CONFIGS = sorted(glob.glob(osp.join(REPO, 'configs', 'rednet', 'rednet*_in1k.py')))
# The authors' table (d-li14/involution README): millions of parameters, 1000-class head.
PUBLISHED_PARAMS = {26: 9.23, 38: 12.39, 50: 15.54, 101: 25.65, 152: 33.99}
# The exact counts (1000-class head). They round to the README's figures except RedNet-152:
# 33,984,582 is 33.98 M, which is what the authors' model definition gives (an audit counted
# their code: 33.98 M); their README prints 33.99. Tested exactly, so that neither a changed
# layer nor a tolerance wide enough for both figures can pass.
EXACT_PARAMS = {26: 9_233_166, 38: 12_386_986, 50: 15_540_806, 101: 25_652_950,
                152: 33_984_582}


def involution_by_loops(m: Involution, x: torch.Tensor) -> torch.Tensor:
    """out[n, g*16+c, i, j] = sum over the K x K window at (i*s, j*s) of the padded input,
    weighted by the kernel generated for (n, g, i, j): one scalar at a time."""
    k, s, gc = m.kernel_size, m.stride, m.group_channels
    kernel = m.conv2(m.conv1(m.avgpool(x)))  # (N, G*K*K, H', W')
    pad = F.pad(x, [(k - 1) // 2] * 4)
    n_, c_, h_, w_ = x.shape[0], x.shape[1], kernel.shape[2], kernel.shape[3]
    out = torch.zeros(n_, c_, h_, w_, dtype=x.dtype)
    for n in range(n_):
        for ch in range(c_):
            g = ch // gc
            for i in range(h_):
                for j in range(w_):
                    total = 0.0
                    for a in range(k):
                        for b in range(k):
                            total += kernel[n, g * k * k + a * k + b, i, j] * \
                                pad[n, ch, i * s + a, j * s + b]
                    out[n, ch, i, j] = total
    return out


@pytest.mark.parametrize('kernel_size,stride', [(3, 1), (3, 2), (5, 1)])
def test_involution_equals_the_direct_sum(kernel_size, stride):
    torch.manual_seed(0)
    m = Involution(32, kernel_size, stride).eval().double()
    x = torch.randn(2, 32, 6, 6, dtype=torch.float64)
    with torch.no_grad():
        got = m(x)
        expected = involution_by_loops(m, x)
    assert got.shape == (2, 32, 6 // stride, 6 // stride)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)
    # Spatial-specific, channel-agnostic: the 16 channels of a group share one kernel.
    assert m.conv2.conv.out_channels == kernel_size ** 2 * 2
    with pytest.raises(ValueError, match='multiple of group_channels'):
        Involution(24, 3)


@pytest.mark.parametrize('stride', [1, 2])
def test_involution_gradients_are_the_numerical_ones(stride):
    """The in-place window sum trains: autograd's gradients (input and kernel generator)
    equal finite differences, in float64."""
    torch.manual_seed(0)
    m = Involution(16, 3, stride).eval().double()
    x = torch.randn(1, 16, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(m, (x, ), eps=1e-6, atol=1e-6)
    m(x).square().sum().backward()
    assert m.conv1.conv.weight.grad.abs().sum() > 0


def classifier(depth, **backbone):
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return MODELS.build(dict(
            type='ImageClassifier', backbone=dict(type='RedNet', depth=depth, **backbone),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=1000, in_channels=2048)))


@pytest.mark.parametrize('depth', sorted(PUBLISHED_PARAMS))
def test_rednet_parameter_counts_are_the_published_ones(depth):
    count = sum(p.numel() for p in classifier(depth).parameters())
    assert count == EXACT_PARAMS[depth]
    published = round(PUBLISHED_PARAMS[depth] - (0.01 if depth == 152 else 0), 2)
    assert round(count / 1e6, 2) == published, (count, PUBLISHED_PARAMS[depth])


def test_rednet_stages_and_the_authors_key_layout(tmp_path):
    model = classifier(26, out_indices=(0, 1, 2, 3)).eval()
    with torch.no_grad():
        outs = model.backbone(torch.randn(1, 3, 64, 64))
    assert [tuple(o.shape) for o in outs] == [(1, 256, 16, 16), (1, 512, 8, 8),
                                              (1, 1024, 4, 4), (1, 2048, 2, 2)]
    state = model.state_dict()
    # Names of the authors' RedNet (mmcls 0.x): stem ConvModules and involution, bottleneck
    # conv1/bn1, the involution's kernel generator conv1 (+BN) and conv2 (+bias), bn2, conv3/bn3.
    for key in ('backbone.stem.0.conv.weight', 'backbone.stem.1.conv1.bn.running_mean',
                'backbone.stem.1.conv2.conv.bias', 'backbone.stem.2.weight',
                'backbone.stem.4.conv.weight', 'backbone.layer1.0.conv1.weight',
                'backbone.layer1.0.bn1.weight', 'backbone.layer1.0.conv2.conv1.conv.weight',
                'backbone.layer1.0.conv2.conv2.conv.bias', 'backbone.layer1.0.bn2.weight',
                'backbone.layer1.0.conv3.weight', 'backbone.layer1.0.bn3.weight',
                'backbone.layer1.0.downsample.0.weight', 'backbone.layer1.0.downsample.1.weight',
                'head.fc.weight'):
        assert key in state, key
    # A checkpoint as the authors saved it (DataParallel prefix, under state_dict) loads
    # strictly after conversion and gives the same outputs.
    authors = dict(state_dict={f'module.{k}': v.clone() for k, v in state.items()}, meta={})
    other = classifier(26, out_indices=(0, 1, 2, 3)).eval()
    other.load_state_dict(convert_rednet_checkpoint(authors), strict=True)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(other.backbone(x)[-1], model.backbone(x)[-1])
    with pytest.raises(KeyError, match="unexpected key 'neck.x'"):
        convert_rednet_checkpoint({'neck.x': torch.zeros(1)})
    with pytest.raises(KeyError, match=r'valid depths are \[26, 38, 50, 101, 152\]'):
        RedNet(depth=18)


@pytest.mark.parametrize('path', CONFIGS, ids=osp.basename)
def test_rednet_imagenet_configs(path):
    cfg = Config.fromfile(path)
    depth = int(osp.basename(path)[len('rednet'):].split('_')[0])
    assert cfg.model.backbone.type == 'RedNet' and cfg.model.backbone.depth == depth
    # The authors' recipe (configs/rednet/README.md).
    assert cfg.optim_wrapper.optimizer == dict(type='SGD', lr=0.8, momentum=0.9,
                                               weight_decay=1e-4, nesterov=True)
    assert cfg.train_cfg.max_epochs == 130 and cfg.auto_scale_lr.base_batch_size == 2048
    assert cfg.train_dataloader.batch_size == 32
    assert cfg.model.head.loss.label_smooth_val == 0.1
    assert len(CONFIGS) == 5
