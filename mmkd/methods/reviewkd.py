"""ReviewKD: distilling knowledge via knowledge review (Chen, Liu, Zhao, Jia, CVPR 2021).

The student's levels are fused from the deepest to the shallowest by attention-based fusion
(ABF) modules, so each shallow student level is compared with the teacher through what the
deeper student levels "review" into it; the hierarchical context loss (HCL) compares each fused
output with the teacher's level of the same index at several pyramid-pooled scales::

    levels i = 0 .. L-1, shallow to deep, as recorded (e.g. layer1 .. layer4 and the pooled
    'neck'; a (N, C) vector is the map (N, C, 1, 1)):
        student s_i (N, Cs_i, Hs_i, Ws_i), teacher t_i (N, Ct_i, Ht_i, Wt_i)
    deepest first, i = L-1 .. 0 (the residual r starts empty):
        x   = BN(conv1x1(s_i))                                   (N, M, Hs_i, Ws_i)
        if i < L-1 (fuse):
            y   = nearest-resize(r to Hs_i x Ws_i)               (N, M, Hs_i, Ws_i)
            a   = sigmoid(conv1x1([x, y]) + bias)                (N, 2, Hs_i, Ws_i)
            x   = x * a[:, 0] + y * a[:, 1]
        x   = nearest-resize(x to Ht_i x Wt_i) when the sizes differ
        o_i = BN(conv3x3(x))                                     (N, Ct_i, Ht_i, Wt_i)
        r   = x
    HCL(o, t) = [mse(o, t) + sum_k w_k mse(avgpool_k(o), avgpool_k(t))] / (1 + sum_k w_k)
        over the pool sizes k in (4, 2, 1) smaller than the map's height H, w = 1/2, 1/4, 1/8
        for the first, second, third size kept (a 4x4 map: k = 2, 1 with weights 1/2, 1/4)
    loss = sum_i HCL(o_i, t_i)                     (mse: the mean over all elements)

M (the ABFs' middle width) defaults to ``min(512, Cs_{L-1})``, the authors' CIFAR rule
(``mid_channel = min(512, in_channels[-1])`` in ``CIFAR-100/model/reviewkd.py`` and in
mdistiller); their ImageNet ResNet-18 uses 512, the same value, and their MobileNet 256 (give
``mid_channels=256``). The ABFs are created in :meth:`build` from the dry run's tensors
(widths and sizes), the 1x1 and 3x3 convolution weights Kaiming-uniform with ``a=1`` as the
authors initialise them (attention convolution and BatchNorms: PyTorch's defaults). They belong
to the method, not to the student: training checkpoints hold them (``methods.<block>.abfs.*``)
so ``--resume`` continues them, and ``tools/model_converters/extract_student.py`` keeps only
``student.*``, so the exported student has none of them (training-only, as in the authors'
code, whose deployed student is the plain network).

Record points, as the authors: the student's stage outputs after the ReLU plus the pooled
feature; the teacher's stage outputs *before* the last ReLU (``preact_feats[1:]``) plus the
pooled feature (both ``pooled_feat``: the (N, C) output of the neck). mdistiller's ImageNet
run also takes the student before the ReLU (``STU_PREACT: True``). mmpretrain's ResNet and
mmkd's ``CifarResNet`` apply that ReLU inside the block (an in-place ``relu`` module called
twice), so the pre-activation cannot be recorded there: our configs record the stage outputs
after the ReLU on both sides (``backbone.layer*`` and ``neck``). This is the one known
difference from the authors' feature choice. Where the BN before the ReLU is a module of
its own that is not overwritten in place, record it: mmkd's pre-activation ``CifarWideResNet``
gives mdistiller's WRN ``preact_feats`` exactly for two of its three stages
(``backbone.layer2.0.bn1``, ``backbone.layer3.0.bn1``; the third, ``final_norm``, ends in an
in-place ReLU), as ``configs/reviewkd/reviewkd_wrn-40-2_wrn-16-2_cifar100.py`` does. The loss
itself equals the authors' HCL of the authors' ABF outputs on identical weights
(tests/test_reviewkd.py).

The authors warm the loss up as ``min(epoch / 20, 1)`` on CIFAR-100 (mdistiller's 1-based
epochs; ``CFG.REVIEWKD.WARMUP_EPOCHS = 20``) and 1 epoch (i.e. none) on ImageNet, with loss
weights 5 (ResNet-32x4 -> 8x4, WRN-40-2 -> 16-2), 0.6 (ResNet-56 -> 20) and 1 (ImageNet
ResNet-34 -> 18): give the block ``loss_weight=dict(type='LinearWarmup', value=5.0, warmup=20,
by_epoch=True)`` (:mod:`mmkd.distillers.loss_weights`). The authors' own CIFAR script counts
epochs from 0, so its first epoch has weight 0; we follow mdistiller's 1-based count.

Sizes: the authors compare square maps and choose the pool sizes from the height (``l >= h``
skips); we do the same (a non-square map uses its height), resize with the full (H, W) (the
authors compare only the width). Student levels may be larger or smaller than the teacher's:
the fused map is resized to the teacher's size before the 3x3 convolution, as mdistiller's
``out_shapes``.
"""
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..registry import MODELS
from ..utils.arguments import InitCfg, PositiveInt
from .base import BaseDistillMethod, Features, flatten_levels


def _as_map(x: torch.Tensor, side: str) -> torch.Tensor:
    """(N, C) -> (N, C, 1, 1) (a pooled feature); (N, C, H, W) unchanged."""
    if x.dim() == 2:
        return x[:, :, None, None]
    if x.dim() != 4:
        raise ValueError(f'ReviewKD needs maps (N, C, H, W) or pooled vectors (N, C); the '
                         f'{side} gives {tuple(x.shape)}.')
    return x


def hcl(student: torch.Tensor, teacher: torch.Tensor,
        pool_sizes: Sequence[int] = (4, 2, 1)) -> torch.Tensor:
    """Hierarchical context loss of one level (module docstring): the MSE of the maps and of
    their adaptive average pools to the sizes k < H, weighted 1, 1/2, 1/4, ... and
    normalised by the sum of the weights."""
    height = student.shape[2]
    loss = F.mse_loss(student, teacher)
    weight, total = 1.0, 1.0
    for k in pool_sizes:
        if k >= height:
            continue
        weight /= 2.0
        loss = loss + weight * F.mse_loss(F.adaptive_avg_pool2d(student, k),
                                          F.adaptive_avg_pool2d(teacher, k))
        total += weight
    return loss / total


class ABF(nn.Module):
    """Attention-based fusion of one student level with the residual from the deeper ones.

    ``conv1``: 1x1 conv (no bias) + BN, ``in_channels -> mid_channels``; ``att_conv`` (only
    when ``fuse``): 1x1 conv with bias ``2 * mid_channels -> 2`` and a sigmoid; ``conv2``: 3x3
    conv (no bias, padding 1) + BN, ``mid_channels -> out_channels``.
    """

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, fuse: bool):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(in_channels, mid_channels, 1, bias=False),
                                   nn.BatchNorm2d(mid_channels))
        self.conv2 = nn.Sequential(
            nn.Conv2d(mid_channels, out_channels, 3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(out_channels))
        self.att_conv = nn.Sequential(nn.Conv2d(2 * mid_channels, 2, 1),
                                      nn.Sigmoid()) if fuse else None
        nn.init.kaiming_uniform_(self.conv1[0].weight, a=1)
        nn.init.kaiming_uniform_(self.conv2[0].weight, a=1)

    def forward(self, x: torch.Tensor, residual: Optional[torch.Tensor], out_size):
        """-> (output (N, out, *out_size), fused (N, mid, *out_size), attention or None)."""
        x = self.conv1(x)
        att = None
        if self.att_conv is not None:
            y = F.interpolate(residual, size=x.shape[-2:], mode='nearest')
            att = self.att_conv(torch.cat([x, y], dim=1))
            x = x * att[:, 0:1] + y * att[:, 1:2]
        if tuple(x.shape[-2:]) != tuple(out_size):
            x = F.interpolate(x, size=tuple(out_size), mode='nearest')
        return self.conv2(x), x, att


@MODELS.register_module()
class ReviewKD(BaseDistillMethod):
    """ReviewKD: ABF fusion of the student's levels from the deepest to the shallowest, and
    the hierarchical context loss against the teacher's levels (module docstring).

    Args:
        mid_channels (int, optional): width M of the ABF modules. Default None:
            ``min(max_mid_channels, student channels of the deepest level)``, the authors'
            CIFAR rule (ImageNet ResNet-18: 512, the same; MobileNet: 256).
        max_mid_channels (int): the cap of that rule. Default 512 (the authors'
            ``min(512, in_channels[-1])``; mdistiller's ``MAX_MID_CHANNEL``).
        pool_sizes (sequence of int): the pyramid pooling sizes of the HCL, each used when
            smaller than the level's height, weighted 1/2, 1/4, ... in the order kept.
            Default (4, 2, 1), the authors'.
        init_cfg (dict | list[dict], optional): MMEngine initialisation of the ABF modules
            (applied by ``init_weights()``). Default None: the authors' initialisation, set
            when the ABFs are built.

    Block: several points on each side, the same number, shallow to deep (the deepest
    last), e.g. ``('backbone.layer1', ..., 'backbone.layer4', 'neck')``; maps (N, C, H, W) or
    pooled vectors (N, C). Widths and sizes are free (a connector per level, the fused map
    resized to the teacher's size). Returns ``loss_reviewkd`` (the sum of the levels' HCL)
    and the diagnostics ``hcl_level<i>`` (each level's HCL, unweighted) and
    ``attention_own`` (the mean attention the fusion gives to the student's own level,
    against the deeper levels' residual; averaged over the fused levels).

    References:
        Paper: Chen, Liu, Zhao, Jia, "Distilling Knowledge via Knowledge Review", CVPR 2021
            (arXiv 2104.09044).
        Code: the authors', https://github.com/dvlab-research/ReviewKD
            (``CIFAR-100/model/reviewkd.py``, ``ImageNet/models/reviewkd.py``: ``ABF``,
            ``ReviewKD``, ``hcl``; ``CIFAR-100/train.py``; commit cede6ea), and
            https://github.com/megvii-research/mdistiller (``distillers/ReviewKD.py``,
            ``engine/cfg.py``, ``configs/cifar100/reviewkd.yaml``; commit a08d46f).
    """

    def __init__(self, mid_channels: Optional[PositiveInt] = None,
                 max_mid_channels: PositiveInt = 512,
                 pool_sizes: Sequence[PositiveInt] = (4, 2, 1), init_cfg: InitCfg = None):
        super().__init__(init_cfg=init_cfg)
        self.mid_channels = None if mid_channels is None else int(mid_channels)
        self.max_mid_channels = int(max_mid_channels)
        self.pool_sizes = tuple(int(k) for k in pool_sizes)
        self.abfs = nn.ModuleList()

    def _levels(self, student: Features, teacher: Features):
        s = [_as_map(x, 'student') for x in flatten_levels(student)]
        t = [_as_map(x, 'teacher') for x in flatten_levels(teacher)]
        if len(s) != len(t):
            raise ValueError(f'ReviewKD: student gives {len(s)} levels but teacher gives '
                             f'{len(t)}; record the same number of points on both sides '
                             '(shallow to deep).')
        return s, t

    def build(self, student: Features, teacher: Features) -> None:
        s, t = self._levels(student, teacher)
        for a, b in zip(s, t):
            if a.shape[0] != b.shape[0]:
                raise ValueError(f'ReviewKD: student batch {a.shape[0]}, teacher batch '
                                 f'{b.shape[0]}.')
        mid = self.mid_channels or min(self.max_mid_channels, s[-1].shape[1])
        self.abfs = nn.ModuleList(
            ABF(a.shape[1], mid, b.shape[1], fuse=i < len(s) - 1)
            for i, (a, b) in enumerate(zip(s, t))).to(device=s[-1].device)
        super().build(student, teacher)

    def fuse(self, student: List[torch.Tensor], out_sizes) -> List:
        """The ABF outputs, shallow to deep, and the attention maps of the fused levels."""
        outputs: List[Optional[torch.Tensor]] = [None] * len(student)
        attention = []
        residual = None
        for i in reversed(range(len(student))):
            outputs[i], residual, att = self.abfs[i](student[i], residual, out_sizes[i])
            if att is not None:
                attention.append(att)
        return outputs, attention

    def forward(self, student: Features, teacher: Features,
                data_samples=None) -> Dict[str, torch.Tensor]:
        s, t = self._levels(student, teacher)
        outputs, attention = self.fuse(s, [x.shape[-2:] for x in t])
        losses = {}
        total = None
        for i, (o, ti) in enumerate(zip(outputs, t)):
            dtype = torch.promote_types(o.dtype, torch.float32)  # float32 under AMP
            level = hcl(o.to(dtype), ti.detach().to(dtype), self.pool_sizes)
            total = level if total is None else total + level
            losses[f'hcl_level{i}'] = level.detach()
        out = dict(loss_reviewkd=total)
        out.update(losses)
        if attention:
            out['attention_own'] = torch.stack(
                [a[:, 0].detach().float().mean() for a in attention]).mean()
        return out
