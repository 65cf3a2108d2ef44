"""The backbone of a non-aligned-reference (NAR) IQA teacher: a distorted image compared with a
pristine image of *other* content (RKIQT's reference-aware teacher, after CVRKD-IQA).

Data flow, N items, input (N, 2C, H, W) = [distorted | reference] on channels (built by
``mmkd.StackImages`` for its own training and by the distiller's ``inputs=['inputs',
'nar_img']`` view when it teaches)::

    lq = x[:, :C]   hq = x[:, C:]                       (N, C, H, W) each
    f_lq = B(lq), f_hq = B(hq)                          one shared backbone B (any registered
                                                        mmpretrain backbone), per out index i
    d_i = difference(f_hq_i - f_lq_i)                   the HQ-LQ difference features
                                                        (``difference`` is an identity module:
                                                        the record point of the distillation)
    out_i = cat(f_lq_i, d_i)  or  d_i                   ``fuse='concat'`` (default) / 'diff'

A global-average-pooling neck and :class:`~mmkd.models.heads.QualityRegressionHead`
(``in_channels`` = 2 D or D) give the quality. RKIQT distils ``backbone.difference`` into the
no-reference student with a masked generator (:class:`mmkd.methods.MGD`).

Where the sources are silent, ours: RKIQT (arXiv 2312.00591) gives no code; its teacher takes
"HQ-LQ distribution difference" from a non-aligned reference as CVRKD-IQA does. Whether the
LQ features are kept beside the difference (``fuse``) and whether the two images share weights
(here they do: a difference of two unrelated networks' features measures nothing) are our
choices. ``bgr_to_rgb`` flips each half after normalisation, for backbones pre-trained on RGB
(a multi-source input is normalised in load order; see :mod:`mmkd.distillers.teachers`).
"""
from typing import Tuple

import torch
import torch.nn as nn
from mmengine.model import BaseModule
from mmpretrain.registry import MODELS

FUSES = ('concat', 'diff')


@MODELS.register_module()
class NonAlignedReferenceBackbone(BaseModule):
    """Shared backbone over [distorted | reference]; outputs the HQ-LQ difference features.

    Args:
        backbone (dict): config of the shared backbone (e.g. ``dict(type='ResNet', ...)``).
        in_channels (int): C, channels of each image. Default 3.
        fuse (str): 'concat' (default; ``cat(f_lq, f_hq - f_lq)``, 2 D channels) or 'diff'
            (``f_hq - f_lq``, D channels).
        bgr_to_rgb (bool): flip each image's channels (after normalisation). Default False.
        init_cfg (dict, optional): as for any BaseModule (the shared backbone keeps its own).
    """

    def __init__(self, backbone: dict, in_channels: int = 3, fuse: str = 'concat',
                 bgr_to_rgb: bool = False, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if fuse not in FUSES:
            raise ValueError(f'NonAlignedReferenceBackbone fuse must be one of {FUSES}, got '
                             f'{fuse!r}')
        self.backbone = MODELS.build(backbone)
        self.in_channels, self.fuse, self.bgr_to_rgb = int(in_channels), fuse, bool(bgr_to_rgb)
        self.difference = nn.Identity()

    def split(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(N, 2C, H, W) -> distorted (N, C, H, W), reference (N, C, H, W)."""
        c = self.in_channels
        if x.dim() != 4 or x.shape[1] != 2 * c:
            raise ValueError(f'NonAlignedReferenceBackbone expects (N, {2 * c}, H, W): the '
                             f'distorted image and a reference on channels, got '
                             f'{tuple(x.shape)} (build it with mmkd.StackImages, or feed the '
                             "teacher inputs=['inputs', '<reference field>'])")
        lq, hq = x[:, :c], x[:, c:]
        if self.bgr_to_rgb and c == 3:
            lq, hq = lq.flip(1), hq.flip(1)
        return lq, hq

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        lq, hq = self.split(x)
        # One pass over both halves: the same weights, and BN statistics of the two together.
        both = self.backbone(torch.cat([lq, hq], dim=0))
        both = both if isinstance(both, (tuple, list)) else (both, )
        outs = []
        for f in both:
            f_lq, f_hq = f.chunk(2, dim=0)
            d = self.difference(f_hq - f_lq)
            outs.append(torch.cat([f_lq, d], dim=1) if self.fuse == 'concat' else d)
        return tuple(outs)
