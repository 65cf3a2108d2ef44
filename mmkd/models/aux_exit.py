"""BYOT's auxiliary exit: a shallow classifier on an intermediate stage, a training-only branch.

"Be Your Own Teacher" (Zhang, Song, Gao, Chen, Bao, Ma, ICCV 2019) puts a classifier after
each stage of a network: a *bottleneck* brings the stage's map to the deepest stage's channels
and resolution, then global average pooling and a fully connected layer give class logits.
The paper does not give the bottleneck's layers, and its code was announced but not released
(MMRazor's BYOT README links an unofficial one). This follows that reimplementation,
luanyunteng/pytorch-be-your-own-teacher (``models/resnet.py``, ``branchBottleNeck``, commit
8045079), whose ResNet-18 reaches the paper's Table 1 numbers (its README)::

    stage output x (N, C_in, H, W)              H = s * H_deep (s = 8, 4, 2 after layer1..3)
      1x1 conv C_in -> C_out/4 (bias), BN, ReLU        (N, C_out/4, H, W)
      s x s conv, stride s, C_out/4 -> C_out/4 (bias), BN, ReLU   (N, C_out/4, H/s, W/s)
      1x1 conv C_out/4 -> C_out (bias), BN, ReLU       (N, C_out, H_deep, W_deep)   features
      global average pool                              (N, C_out)                   fc input
      fc C_out -> num_classes                          (N, num_classes)             output

Convolutions are initialised as the reimplementation's network (Kaiming normal, fan-out,
ReLU; BN weight 1, bias 0); the fc keeps PyTorch's default. Record points: the exit's output
(``kd_inserts.<name>``) is its logits; its pooled features, which BYOT's hint compares with
the deepest stage's pooled features, are ``kd_inserts.<name>.fc@input``.

Use it as a branch insert (:mod:`mmkd.distillers.inserts`, ``mode='branch'``): it is trained
with the student, skipped in ``predict`` and dropped at export. ``in_channels``,
``out_channels`` and ``stride`` are read from the model in the distiller's dry run (the output
the exit follows and the output of ``match``, the deepest stage), so a config states only
``num_classes`` and ``match``.
"""
from typing import Dict, List, Optional

import torch
import torch.nn as nn
from mmengine.model import BaseModule

from mmkd.registry import MODELS

SHAPE_ARGUMENTS = ('in_channels', 'out_channels', 'stride')


def _map(value, what: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or value.dim() != 4:
        raise TypeError(f'AuxExit reads {what}, which must be one (N, C, H, W) map; got '
                        f'{type(value).__name__}'
                        f'{tuple(value.shape) if isinstance(value, torch.Tensor) else ""}. '
                        'Hang it after a stage (e.g. backbone.layer1) and match a stage '
                        '(e.g. backbone.layer4), not a backbone or neck whose output is a tuple.')
    return value


@MODELS.register_module()
class AuxExit(BaseModule):
    """BYOT's shallow classifier (module docstring).

    Args:
        num_classes (int): classes of the logits.
        match (str, optional): the student module whose output the bottleneck is brought to:
            the deepest stage (``'backbone.layer4'``). Read in the dry run to infer
            ``out_channels`` and ``stride``; not needed when both are given.
        in_channels (int, optional): channels of the stage the exit follows (inferred).
        out_channels (int, optional): channels of ``match``'s output (inferred).
        stride (int, optional): how many times larger the followed stage's map is than
            ``match``'s (inferred; 1 after the deepest stage itself). The bottleneck's middle
            convolution has kernel and stride ``stride``.

    Input (N, in_channels, H, W); output logits (N, num_classes). Sub-modules ``features``
    (the bottleneck), ``pool``, ``fc``.
    """

    def __init__(self, num_classes: int, match: Optional[str] = None,
                 in_channels: Optional[int] = None, out_channels: Optional[int] = None,
                 stride: Optional[int] = None, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        for name, value in (('num_classes', num_classes), ('in_channels', in_channels),
                            ('out_channels', out_channels), ('stride', stride)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(
                    f'AuxExit {name} must be an int >= 1, got {value!r}.' +
                    (' Under mmkd.Distiller(student_inserts=...) leave it out and give '
                     "match='<the deepest stage>' (e.g. 'backbone.layer4'): it is read from "
                     'the model in the dry run; a model built without a distiller '
                     '(mmkd.StudentWithInserts) must state it.'
                     if name in SHAPE_ARGUMENTS and value is None else ''))
        self.num_classes, self.match = num_classes, match
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        middle = max(out_channels // 4, 1)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, middle, kernel_size=1, stride=1),
            nn.BatchNorm2d(middle),
            nn.ReLU(),
            nn.Conv2d(middle, middle, kernel_size=stride, stride=stride),
            nn.BatchNorm2d(middle),
            nn.ReLU(),
            nn.Conv2d(middle, out_channels, kernel_size=1, stride=1),
            nn.BatchNorm2d(out_channels),
            nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(out_channels, num_classes)
        for m in self.features.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    # ---------------------------------------------------------------- shape inference
    @classmethod
    def shape_probes(cls, cfg: dict) -> List[str]:
        """The module whose output the exit matches (read in the dry run), if named."""
        match = cfg.get('match')
        return [match] if isinstance(match, str) and match else []

    @classmethod
    def infer_shape_arguments(cls, cfg: dict, output, probes: Dict[str, object]) -> dict:
        """``in_channels``, ``out_channels`` and ``stride`` that ``cfg`` leaves out, from the
        output the exit follows and ``match``'s output."""
        filled = {}
        if cfg.get('in_channels') is None:
            filled['in_channels'] = int(_map(output, 'the output it follows').shape[1])
        if cfg.get('out_channels') is None or cfg.get('stride') is None:
            match = cfg.get('match')
            if not match:
                raise ValueError("AuxExit needs match='<the deepest stage>' (e.g. "
                                 "'backbone.layer4') to infer out_channels and stride, or "
                                 'both stated.')
            deep = _map(probes.get(match), f'the output of match={match!r}')
            x = _map(output, 'the output it follows')
            (h, w), (hd, wd) = x.shape[2:], deep.shape[2:]
            if h % hd or w % wd or h // hd != w // wd:
                raise ValueError(f'AuxExit: the map it follows ({h}x{w}) is not an integer '
                                 f'multiple, equal in height and width, of the map of '
                                 f'match={match!r} ({hd}x{wd}); its bottleneck reduces by one '
                                 'stride. Hang it after a stage whose map is.')
            if cfg.get('out_channels') is None:
                filled['out_channels'] = int(deep.shape[1])
            if cfg.get('stride') is None:
                filled['stride'] = h // hd
        return filled

    # ---------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _map(x, 'the output it follows')
        if x.shape[1] != self.in_channels:
            raise ValueError(f'AuxExit has in_channels={self.in_channels} but the module it '
                             f'follows gives {x.shape[1]}-channel maps (shape '
                             f'{tuple(x.shape)}).')
        return self.fc(self.pool(self.features(x)).flatten(1))

    def extra_repr(self) -> str:
        return (f'in_channels={self.in_channels}, out_channels={self.out_channels}, '
                f'stride={self.stride}, num_classes={self.num_classes}, match={self.match!r}')
