"""Wide ResNets for CIFAR (Zagoruyko & Komodakis, 2016): WRN-16-2, WRN-40-1, WRN-40-2, ...

WRN-d-k: a conv3x3 stem (16 channels), three stages of n = (d - 4) / 6 pre-activation basic
blocks of widths 16k, 32k, 64k (BN-ReLU-conv3x3-BN-ReLU-[dropout]-conv3x3, 1x1 conv shortcut
where the shape changes), and a final BN + ReLU. Registered in mmpretrain as
``CifarWideResNet``; pair it with ``GlobalAveragePooling`` and ``LinearClsHead``.

Features for AFD/RTK (clovaai/attention-feature-distillation, ``models/wrn.py``): the authors'
feature of block i is ``relu(BN(output of block i))``, where BN is the *next* block's ``bn1``
(across stages: the last block of ``layer1`` is normalised by ``layer2.0.bn1``) or, after the
last block, the network's final BN. A block's own output is the raw residual sum, so
``'backbone.layer*.*'`` records something else. Each block therefore applies its first
activation through a parameter-free child ReLU ``preact`` (its output is the block's
``relu(bn1(x))``): the authors' feature of block i is the output of block i+1's ``preact``,
and of ``final_norm`` for the last block. For WRN-d-k, the authors' 3n features are::

    [dict(module='backbone.layer*.*.preact', matches='1:'), 'backbone.final_norm']

(``layer1.0.preact`` is the activated stem, which they leave out). ``preact`` is a ReLU module
and not a wrapper holding ``bn1``: outputs, compute and ``state_dict`` keys are those of the
plain block, and nothing keeps a second reference to ``bn1`` that SyncBN conversion or
conv-BN fusion (which replace child modules) would leave stale. Neither ``preact`` nor
``final_norm``'s output is modified in place afterwards, so hooks record the values the next
layers read. (Record ``final_norm``, not ``final_norm.0``: its in-place ReLU overwrites the BN
output.)
"""
from typing import Sequence

import torch
import torch.nn as nn
from mmengine.model import BaseModule
from mmpretrain.registry import MODELS


class WideBasicBlock(nn.Module):
    """Pre-activation block. (N, C_in, H, W) -> (N, C, H/s, W/s).

    ``preact`` (a parameter-free ReLU) gives the block's activated input ``relu(bn1(x))``,
    (N, C_in, H, W), its own record point: the AFD authors' feature of the previous block.
    """

    def __init__(self, in_channels: int, channels: int, stride: int = 1, drop_rate: float = 0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.relu = nn.ReLU(inplace=False)
        # A module of its own (not self.relu, which also runs after bn2) so that a hook on it
        # sees relu(bn1(x)) only.
        self.preact = nn.ReLU(inplace=False)
        self.dropout = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()
        self.shortcut = None
        if stride != 1 or in_channels != channels:
            self.shortcut = nn.Conv2d(in_channels, channels, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.preact(self.bn1(x))
        out = self.conv2(self.dropout(self.relu(self.bn2(self.conv1(pre)))))
        # The projection shortcut reads the pre-activated input, as in the original WRN code.
        return out + (x if self.shortcut is None else self.shortcut(pre))


@MODELS.register_module()
class CifarWideResNet(BaseModule):
    """WRN-depth-widen_factor for 32x32 inputs.

    Args:
        depth (int): 6n + 4 (16, 28, 40, ...).
        widen_factor (int): k. Default 2.
        drop_rate (float): dropout between the two convs of a block. Default 0.
        out_indices (sequence of int): stages (0..2) to return. The last stage is returned
            after the final BN + ReLU. Default (2, ).
    Input (N, 3, 32, 32); outputs (N, 16k * 2^i, 32 / 2^i, 32 / 2^i) maps. Blocks are modules
    ``layer{k}.{j}``; the AFD authors' per-block features are the outputs of
    ``layer{k}.{j}.preact`` (the previous block's) and ``final_norm`` (the last block's), see
    the module docstring.
    """

    def __init__(self, depth: int = 16, widen_factor: int = 2, drop_rate: float = 0.0,
                 out_indices: Sequence[int] = (2, ), init_cfg=None):
        super().__init__(init_cfg=init_cfg or [
            dict(type='Kaiming', layer='Conv2d'),
            dict(type='Constant', val=1, layer='BatchNorm2d')])
        if (depth - 4) % 6 != 0 or depth < 10:
            raise ValueError(f'CifarWideResNet depth must be 6n + 4 (e.g. 16, 28, 40), got '
                             f'{depth}')
        n = (depth - 4) // 6
        widths = (16 * widen_factor, 32 * widen_factor, 64 * widen_factor)
        self.out_indices = tuple(out_indices)
        self.stem = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        in_channels = 16
        for i, (channels, stride) in enumerate(zip(widths, (1, 2, 2))):
            blocks = []
            for j in range(n):
                blocks.append(WideBasicBlock(in_channels, channels, stride if j == 0 else 1,
                                             drop_rate))
                in_channels = channels
            self.add_module(f'layer{i + 1}', nn.Sequential(*blocks))
        self.final_norm = nn.Sequential(nn.BatchNorm2d(in_channels), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor):
        x = self.stem(x)
        outs = []
        for i in range(3):
            x = getattr(self, f'layer{i + 1}')(x)
            if i == 2:
                x = self.final_norm(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)
