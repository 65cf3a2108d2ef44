"""Involution and RedNet (Li et al., "Involution: Inverting the Inherence of Convolution for
Visual Recognition", CVPR 2021; authors' code d-li14/involution), which mmpretrain 1.2 lacks.

Involution, data flow for x (N, C, H, W), kernel K, G = C / 16 groups of 16 channels::

    x -> [AvgPool(s) if stride s > 1] -> conv1: 1x1 C -> C/4 + BN + ReLU
      -> conv2: 1x1 C/4 -> K*K*G (with bias)          kernel per output position (N, G*K*K, H', W')
    x -> unfold K x K (padding (K-1)/2, stride s)     (N, G, 16, K*K, H', W')
    out[n, g*16 + c, i, j] = sum_k kernel[n, g, k, i, j] * patch[n, g, c, k, i, j]   (N, C, H', W')

The kernel is generated from the input at each position and shared by the 16 channels of a group
(the inverse of convolution: spatial-specific, channel-agnostic). Written with ``unfold`` in
plain PyTorch (the authors' naive version; their CUDA kernel computes the same sum). An in-place
sum over the K*K shifted windows was measured too (digits teacher, 1 CPU thread): twice as fast
in inference on 16x16 maps, but slower to train and slower on 8x8 maps, so unfold stays.

RedNet is mmpretrain's ResNet with the 3x3 conv of every bottleneck replaced by a 7x7 involution
and a stem of 3x3 stride-2 conv (C/2) + BN + ReLU, 3x3 involution, BN, ReLU, 3x3 conv (C) + BN
+ ReLU, then the max-pool. Module names and the order of parameters follow the authors' code
(``stem.0.conv``, ``stem.1.conv1.conv``, ``layer1.0.conv2.conv2.conv``, ``bn1``..``bn3``), so
their checkpoints' keys map one to one (:func:`convert_rednet_checkpoint`).
"""
from collections import OrderedDict

import torch
import torch.nn as nn
from mmcv.cnn import ConvModule
from mmpretrain.models.backbones.resnet import Bottleneck, ResNet
from mmpretrain.registry import MODELS


class Involution(nn.Module):
    """Involution over ``channels`` channels (a multiple of ``group_channels``).

    Args:
        channels (int): input = output channels C.
        kernel_size (int): K (odd). RedNet: 7 in bottlenecks, 3 in the stem.
        stride (int): the kernel is generated from the average-pooled input. Default 1.
        reduction_ratio (int): the kernel generator's bottleneck C -> C / r. Default 4.
        group_channels (int): channels sharing one kernel. Default 16.
    """

    def __init__(self, channels: int, kernel_size: int, stride: int = 1,
                 reduction_ratio: int = 4, group_channels: int = 16):
        super().__init__()
        if channels % group_channels:
            raise ValueError(f'Involution: channels ({channels}) must be a multiple of '
                             f'group_channels ({group_channels}).')
        if kernel_size % 2 == 0:
            raise ValueError(f'Involution: kernel_size must be odd, got {kernel_size}.')
        self.channels, self.kernel_size, self.stride = channels, kernel_size, stride
        self.group_channels = group_channels
        self.groups = channels // group_channels
        self.conv1 = ConvModule(channels, channels // reduction_ratio, 1,
                                norm_cfg=dict(type='BN'), act_cfg=dict(type='ReLU'))
        self.conv2 = ConvModule(channels // reduction_ratio, kernel_size ** 2 * self.groups, 1,
                                norm_cfg=None, act_cfg=None)
        self.avgpool = nn.AvgPool2d(stride, stride) if stride > 1 else nn.Identity()
        self.unfold = nn.Unfold(kernel_size, 1, (kernel_size - 1) // 2, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernel = self.conv2(self.conv1(self.avgpool(x)))  # (N, G*K*K, H', W')
        n, _, h, w = kernel.shape
        kernel = kernel.view(n, self.groups, 1, self.kernel_size ** 2, h, w)
        patches = self.unfold(x).view(n, self.groups, self.group_channels,
                                      self.kernel_size ** 2, h, w)
        return (kernel * patches).sum(dim=3).view(n, self.channels, h, w)


class InvolutionBottleneck(Bottleneck):
    """mmpretrain's ResNet bottleneck with its 3x3 conv replaced by a 7x7 involution (the
    stride, if any, is the involution's, as in ResNet's 'pytorch' style)."""

    def __init__(self, *args, involution_kernel: int = 7, **kwargs):
        super().__init__(*args, **kwargs)
        # Replaces the parent's 3x3 conv2 (built and dropped once, at construction only):
        # the parent's __init__ keeps every other name and the norms where the authors have them.
        self.conv2 = Involution(self.mid_channels, involution_kernel, self.conv2_stride)


def rednet_stem(in_channels: int, stem_channels: int, stride: int = 2,
                norm_cfg: dict = dict(type='BN'), conv_cfg=None) -> nn.Sequential:
    """The authors' RedNet stem, (N, C_in, H, W) -> (N, C, H / s, W / s): 3x3 conv (stride s)
    C_in -> C/2 + BN + ReLU, 3x3 involution on C/2, BN, ReLU, 3x3 conv C/2 -> C + BN + ReLU.
    Shared by :class:`RedNet` and the involution stem of the inductive-bias-token ViT
    (Co-advise's ``embed_inv`` is RedNet-26's ``stem``); indices and names as the authors'."""
    half = stem_channels // 2
    return nn.Sequential(
        ConvModule(in_channels, half, 3, stride=stride, padding=1, conv_cfg=conv_cfg,
                   norm_cfg=dict(norm_cfg), inplace=True),
        Involution(half, 3, 1),
        nn.BatchNorm2d(half),
        nn.ReLU(inplace=True),
        ConvModule(half, stem_channels, 3, stride=1, padding=1, conv_cfg=conv_cfg,
                   norm_cfg=dict(norm_cfg), inplace=True))


@MODELS.register_module()
class RedNet(ResNet):
    """RedNet-26/38/50/101/152 (ImageNet top-1 75.96 / 77.48 / 78.35 / 78.92 / 79.12 and
    9.23 / 12.39 / 15.54 / 25.65 / 33.99 M parameters with the 1000-class head, as the authors
    report). Arguments as mmpretrain's ``ResNet``; ``deep_stem`` is always the involution stem.

    Two options for small images (ours; the authors' ImageNet model is the default):
    ``stem_stride`` (default 2) and ``stem_maxpool`` (default True, the 3x3 stride-2 max-pool
    after the stem). ``stem_stride=1, stem_maxpool=False`` keeps a 16x16 digit at 16x16 into
    the first stage, as a CIFAR ResNet does.
    """

    arch_settings = {
        26: (InvolutionBottleneck, (1, 2, 4, 1)),
        38: (InvolutionBottleneck, (2, 3, 5, 2)),
        50: (InvolutionBottleneck, (3, 4, 6, 3)),
        101: (InvolutionBottleneck, (3, 4, 23, 3)),
        152: (InvolutionBottleneck, (3, 8, 36, 3)),
    }

    def __init__(self, depth: int, stem_stride: int = 2, stem_maxpool: bool = True, **kwargs):
        if depth not in self.arch_settings:
            raise KeyError(f'RedNet: invalid depth {depth}; valid depths are '
                           f'{sorted(self.arch_settings)}.')
        self.stem_stride, self.stem_maxpool = stem_stride, stem_maxpool
        kwargs['deep_stem'] = True  # ResNet.forward then runs self.stem (built below)
        super().__init__(depth, **kwargs)

    def _make_stem_layer(self, in_channels, stem_channels):
        self.stem = rednet_stem(in_channels, stem_channels, self.stem_stride, self.norm_cfg,
                                self.conv_cfg)
        self.maxpool = (nn.MaxPool2d(kernel_size=3, stride=2, padding=1) if self.stem_maxpool
                        else nn.Identity())


def convert_rednet_checkpoint(state_dict: dict) -> 'OrderedDict[str, torch.Tensor]':
    """An authors' RedNet checkpoint as this RedNet in an mmpretrain ``ImageClassifier`` loads
    it. Two layouts, possibly under ``state_dict`` or ``model`` and with DataParallel's
    ``module.`` prefix:

    - d-li14/involution (mmcls 0.x): ``backbone.*`` / ``head.fc.*``, kept as they are;
    - OliverRensu/co-advise's involution teacher (``rednet.Red101``: an mmcls RedNet as
      ``model.*``, a linear ``classifier.*``; ``inv_teacher.pth`` stores it under ``model``):
      ``model.`` -> ``backbone.``, ``classifier.`` -> ``head.fc.``.

    The module layout below the prefixes is the authors', so nothing else changes; any other key
    is an error naming it. (As a distiller's teacher, ``revise_keys`` does the same renaming.)"""
    for wrapper in ('state_dict', 'model'):
        if wrapper in state_dict and isinstance(state_dict[wrapper], dict):
            state_dict = state_dict[wrapper]
            break
    renames = (('backbone.', 'backbone.'), ('head.', 'head.'), ('model.', 'backbone.'),
               ('classifier.', 'head.fc.'))
    out = OrderedDict()
    for key, value in state_dict.items():
        new = key[len('module.'):] if key.startswith('module.') else key
        for old, replacement in renames:
            if new.startswith(old):
                out[replacement + new[len(old):]] = value
                break
        else:
            raise KeyError(f'convert_rednet_checkpoint: unexpected key {key!r} (expected '
                           "'backbone.*' / 'head.*' as in the authors' mmcls checkpoints, or "
                           "'model.*' / 'classifier.*' as in Co-advise's involution teacher).")
    return out
