"""The CIFAR ResNets of the KD literature (ResNet-20/32/56/110, ResNet-8x4/32x4).

He et al.'s CIFAR design (three stages of basic blocks, n = (depth - 2) / 6 per stage, 32x32
input, no stem pooling), with the widths the distillation benchmarks (CRD, AFD, DKD...) use:
16-16-32-64, or 32-64-128-256 for the "x4" models, and 1x1 conv + BN shortcuts where the shape
changes. Registered in mmpretrain as ``CifarResNet``; pair it with ``GlobalAveragePooling`` and
``LinearClsHead``. mmpretrain's own ``ResNet_CIFAR`` is the ImageNet ResNet with a CIFAR stem,
a different (much larger) family.
"""
from typing import Sequence

import torch
import torch.nn as nn
from mmengine.model import BaseModule
from mmpretrain.registry import MODELS


class CifarBasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN + shortcut, then ReLU. (N, C_in, H, W) -> (N, C, H/s, W/s)."""

    def __init__(self, in_channels: int, channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride, bias=False), nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


@MODELS.register_module()
class CifarResNet(BaseModule):
    """CIFAR ResNet: stem conv3x3 + BN + ReLU, then ``layer1..layer3`` of basic blocks.

    Args:
        depth (int): 6n + 2 (8, 14, 20, 32, 44, 56, 110, ...).
        widths (sequence of 4 ints): stem and stage widths. Default (16, 16, 32, 64);
            (32, 64, 128, 256) gives ResNet-8x4 / ResNet-32x4.
        out_indices (sequence of int): stages (0..2) whose outputs are returned. Default (2, ).
    Input (N, 3, 32, 32); outputs a tuple of (N, widths[i+1], 32 / 2^i, 32 / 2^i) maps.
    Every residual block is a module ``layer{k}.{j}``, so distillers can record any of them.
    """

    def __init__(self, depth: int = 20, widths: Sequence[int] = (16, 16, 32, 64),
                 out_indices: Sequence[int] = (2, ), init_cfg=None):
        super().__init__(init_cfg=init_cfg or [
            dict(type='Kaiming', layer='Conv2d'),
            dict(type='Constant', val=1, layer='BatchNorm2d')])
        if (depth - 2) % 6 != 0 or depth < 8:
            raise ValueError(f'CifarResNet depth must be 6n + 2 (e.g. 20, 32, 56, 110), got '
                             f'{depth}')
        if len(widths) != 4:
            raise ValueError(f'CifarResNet widths must give 4 numbers (stem, 3 stages), got '
                             f'{widths}')
        n = (depth - 2) // 6
        self.out_indices = tuple(out_indices)
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))
        in_channels = widths[0]
        for i, (channels, stride) in enumerate(zip(widths[1:], (1, 2, 2))):
            blocks = []
            for j in range(n):
                blocks.append(CifarBasicBlock(in_channels, channels, stride if j == 0 else 1))
                in_channels = channels
            self.add_module(f'layer{i + 1}', nn.Sequential(*blocks))

    def forward(self, x: torch.Tensor):
        x = self.stem(x)
        outs = []
        for i in range(3):
            x = getattr(self, f'layer{i + 1}')(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)
