"""MGD: Masked Generative Distillation (Yang et al., ECCV 2022; authors' code yzd-v/MGD, also
in MMRazor as ``MGDConnector`` + ``MGDLoss``), and its use as RKIQT's masked quality-contrastive
distillation.

Data flow for one level, student map s (N, C_s, H_s, W_s), teacher map t (N, C_t, H, W)::

    s -> [resize to (H, W) if the sizes differ]            the "adaptive layer" (ours, optional)
      -> align: Conv1x1 C_s -> C_t  (only if C_s != C_t)   authors: ``align``
      -> x * M                                              M: random mask, ratio lambda
             spatial M (N, 1, H, W): 0 where rand > 1 - lambda  (detection, segmentation)
             channel M (N, C, 1, 1): 0 where rand < lambda      (classification)
      -> generator: Conv3x3 C_t -> C_t, ReLU, Conv3x3 C_t -> C_t  (padding 1)
      -> loss = alpha * sum((G(s * M) - t)^2) / N

ViT tokens (N, L, C) (``skip_tokens`` = k given) become a map: the first k (class and other
extra tokens) are dropped and the L - k patch tokens, a square grid, are laid out as
(N, C, sqrt(L - k), sqrt(L - k)); RKIQT's student is a ViT whose patch tokens feed the generator.

Vectors (N, C) are treated as (N, C, 1, 1) maps (the channel mask applies; a 3x3 conv with
padding 1 on a 1x1 map is its centre tap, a linear layer), e.g. a quality head's input.

Defaults per task (``preset``), each the authors' config:

==============  ========  ======  =======  ======================================================
preset          mask      lambda  alpha    source (yzd-v/MGD)
==============  ========  ======  =======  ======================================================
detection       spatial   0.65    2e-5     det/.../retina_rx101_64x4d_distill_retina_r50_fpn_2x
                                           (each FPN level, ``neck.fpn_convs.i.conv``)
segmentation    spatial   0.75    2e-5     seg/.../psp_r101_distill_psp_r18_40k (last stage)
classification  channel   0.15    7e-5     cls/.../res34_distill_res18_img (last stage)
==============  ========  ======  =======  ======================================================

``alpha`` is the authors' loss weight (the block's ``loss_weight`` multiplies it; keep that 1).
Their detection students also start with the teacher's neck and head (``init_student=True``),
which mmkd leaves to the config (``load_from``).

**RKIQT** ("Less is More", arXiv 2312.00591) reconstructs, from the masked student features,
the *reference-aware teacher's HQ-LQ difference features* with the same generator (two 3x3
convs with a ReLU) after an adaptive layer for the shapes: that is this method with the
teacher's record point set to its difference features. Their mask type and ratio are not
stated; ``mask`` / ``ratio`` are options, and the demo's are chosen on the tuning split.
"""
from typing import Annotated, Dict, Literal, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..registry import MODELS
from ..utils.arguments import Interval, LossName, NonNegativeFloat, NonNegativeInt
from .base import LevelwiseMethod

PRESETS = {
    'detection': dict(mask='spatial', ratio=0.65, alpha=2e-5),
    'segmentation': dict(mask='spatial', ratio=0.75, alpha=2e-5),
    'classification': dict(mask='channel', ratio=0.15, alpha=7e-5),
}
Preset = Literal['detection', 'segmentation', 'classification']
Mask = Literal['spatial', 'channel']
#: F.interpolate's modes for (N, C, H, W) maps.
Resize = Literal['nearest', 'nearest-exact', 'bilinear', 'bicubic', 'area']


class MGDGenerator(nn.Module):
    """align (optional 1x1) + generator (3x3, ReLU, 3x3) of one level; names as the authors'."""

    def __init__(self, student_channels: int, teacher_channels: int, align: bool):
        super().__init__()
        self.align = (nn.Conv2d(student_channels, teacher_channels, 1) if align else None)
        self.generation = nn.Sequential(
            nn.Conv2d(teacher_channels, teacher_channels, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(teacher_channels, teacher_channels, 3, padding=1))


def mgd_mask(shape, kind: str, ratio: float, device, generator=None) -> torch.Tensor:
    """The authors' random mask for an (N, C, H, W) map: spatial (N, 1, H, W), 0 where
    rand > 1 - ratio; channel (N, C, 1, 1), 0 where rand < ratio. Float 0 / 1."""
    n, c, h, w = shape
    if kind == 'spatial':
        rand = torch.rand((n, 1, h, w), device=device, generator=generator)
        return (rand <= 1 - ratio).float()
    rand = torch.rand((n, c, 1, 1), device=device, generator=generator)
    return (rand >= ratio).float()


@MODELS.register_module()
class MGD(LevelwiseMethod):
    """Masked generative distillation (module docstring), one generator per level.

    Args:
        preset (str): 'detection' (default), 'segmentation' or 'classification': the authors'
            mask, ratio and alpha for that task (spatial 0.65 2e-5, spatial 0.75 2e-5,
            channel 0.15 7e-5; the module docstring's table).
        mask (str, optional): 'spatial' or 'channel'; overrides the preset.
        ratio (float, optional): lambda, the share of positions / channels masked, in [0, 1);
            overrides the preset.
        alpha (float, optional): the loss weight alpha, multiplying the summed squared error
            (keep the block's ``loss_weight`` at 1); overrides the preset.
        align (str): 'auto' (default: a 1x1 conv only when channels differ, as the authors),
            'always' or 'none'.
        resize (str, optional): a student map of another spatial size is resized to the
            teacher's with this ``F.interpolate`` mode ('bilinear', default; RKIQT's adaptive
            layer) or an error (None, as the authors, who assert equal sizes).
        skip_tokens (int, optional): student values are ViT tokens (N, L, C); drop the first
            ``skip_tokens`` and lay the patch tokens out as a map (module docstring).
        loss_name (str): key of the returned loss. Default 'loss_mgd'.
        share_levels, level_reduction: see :class:`LevelwiseMethod`.

    Block: maps (N, C, H, W) on both sides, any channel counts (e.g. ``'neck'``, every FPN
    level; or the last stage, ``'backbone.layer4'``), vectors (N, C) as 1x1 maps, or ViT
    tokens (N, L, C) on the student side with ``skip_tokens``. Returns ``loss_mgd``.

    Mask order over levels: we draw each level's mask in the order of the record point's
    levels, finest FPN level first; the authors' detection configs list their distillation
    points from ``neck.fpn_convs.4`` down to ``fpn_convs.0`` and draw in that order. The masks'
    distribution is the same; for one seed the masks differ (so runs are not bit-comparable).

    References:
        Paper: Yang, Li, Shao, Shi, Yuan, Yuan, "Masked Generative Distillation", ECCV 2022
            (arXiv 2205.01529).
        Code: the authors', https://github.com/yzd-v/MGD (also in MMRazor as
            ``MGDConnector`` + ``MGDLoss``).
        RKIQT's use: Li et al., "Less is More: Learning Reference Knowledge Using
            No-Reference Image Quality Assessment" (arXiv 2312.00591).
    """

    def __init__(self, preset: Preset = 'detection', mask: Optional[Mask] = None,
                 ratio: Optional[Annotated[float, Interval(ge=0, lt=1)]] = None,
                 alpha: Optional[NonNegativeFloat] = None,
                 align: Literal['auto', 'always', 'none'] = 'auto',
                 resize: Optional[Resize] = 'bilinear',
                 skip_tokens: Optional[NonNegativeInt] = None, loss_name: LossName = 'loss_mgd',
                 **kwargs):
        super().__init__(**kwargs)
        self.skip_tokens = skip_tokens
        cfg = dict(PRESETS[preset])
        cfg.update({k: v for k, v in dict(mask=mask, ratio=ratio, alpha=alpha).items()
                    if v is not None})
        self.preset, self.mask, self.ratio = preset, cfg['mask'], float(cfg['ratio'])
        self.alpha, self.align, self.resize = float(cfg['alpha']), align, resize
        self.loss_name = loss_name

    @staticmethod
    def as_map(x: torch.Tensor, who: str) -> torch.Tensor:
        if x.dim() == 2:
            return x[:, :, None, None]
        if x.dim() != 4:
            raise ValueError(f'MGD needs (N, C, H, W) maps or (N, C) vectors; the {who} gives '
                             f'{tuple(x.shape)} (for ViT tokens set skip_tokens, or record a '
                             "feature map, e.g. StemTokenViT(out_type='featmap')).")
        return x

    @staticmethod
    def tokens_to_map(x: torch.Tensor, skip: int) -> torch.Tensor:
        """(N, L, C) tokens -> (N, C, h, w) map of the L - ``skip`` patch tokens (h = w)."""
        if x.dim() != 3:
            raise ValueError(f'MGD(skip_tokens={skip}) needs (N, L, C) student tokens, got '
                             f'{tuple(x.shape)}.')
        n, length, c = x.shape
        side = int(round((length - skip) ** 0.5)) if length > skip else 0
        if side * side != length - skip or side == 0:
            raise ValueError(f'MGD(skip_tokens={skip}): {length} tokens leave {length - skip} '
                             'patch tokens, not a square grid; skip_tokens is the number of '
                             'class / extra tokens before the patches.')
        return x[:, skip:].transpose(1, 2).reshape(n, c, side, side)

    def student_map(self, student: torch.Tensor) -> torch.Tensor:
        if self.skip_tokens is not None:
            student = self.tokens_to_map(student, self.skip_tokens)
        return self.as_map(student, 'student')

    def build_level(self, student, teacher):
        s, t = self.student_map(student), self.as_map(teacher, 'teacher')
        c_s, c_t = s.shape[1], t.shape[1]
        if self.align == 'none' and c_s != c_t:
            raise ValueError(f"MGD(align='none') needs equal channels, got student {c_s} and "
                             f'teacher {c_t}.')
        return MGDGenerator(c_s, c_t, self.align == 'always' or c_s != c_t)

    def level_loss(self, student, teacher, connector, data_samples=None
                   ) -> Dict[str, torch.Tensor]:
        s, t = self.student_map(student), self.as_map(teacher, 'teacher')
        if s.shape[2:] != t.shape[2:]:
            if self.resize is None:
                raise ValueError(f'MGD: student map {tuple(s.shape[2:])} and teacher map '
                                 f'{tuple(t.shape[2:])} differ in size; set resize='
                                 "'bilinear' (or another F.interpolate mode).")
            s = F.interpolate(s, size=t.shape[2:], mode=self.resize,
                              **({} if self.resize in ('nearest', 'area', 'nearest-exact')
                                 else dict(align_corners=False)))
        if connector.align is not None:
            s = connector.align(s)
        masked = s * mgd_mask(s.shape, self.mask, self.ratio, s.device).to(s.dtype)
        generated = connector.generation(masked)
        loss = (generated.float() - t.float()).pow(2).sum() / t.shape[0]
        return {self.loss_name: self.alpha * loss}
