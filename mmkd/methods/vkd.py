"""VkD: "Improving Knowledge Distillation using Orthogonal Projections" (Miles, Elezi, Deng,
CVPR 2024).

The student feature is mapped to the teacher's width by a bias-free *orthogonal* linear map (so
the projector cannot distort the student's feature geometry; it can only rotate/embed it), the
target is normalised in a task-specific way, and the two are matched with a smooth L1 loss::

    student (N, C_s) | (N, L, C_s) | (N, C_s, H, W)  -> tokens (M, C_s)
    projected = W s [* scale + bias],   W (C_t, C_s) with W^T W = I (C_t >= C_s) or W W^T = I
    target    = norm(teacher tokens (M, C_t));   projected also normalised for 'batch'
    loss      = smooth_l1(projected, target, beta)      (or MSE)
"""
from typing import Dict, Literal, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch.nn.utils import parametrizations

from ..registry import MODELS
from ..utils.arguments import LossName, NonNegativeFloat, NonNegativeInt, PositiveFloat
from .base import LevelwiseMethod, resize_like


class OrthogonalProjector(BaseModule):
    """Bias-free linear map C_in -> C_out whose weight stays orthogonal.

    Built on ``torch.nn.utils.parametrizations.orthogonal`` (its default map): the optimiser
    updates an unconstrained parameter and the weight is recomputed as an orthogonal matrix, so
    ``W^T W = I`` when the student is narrower (C_out >= C_in: columns orthonormal, inner
    products preserved) and ``W W^T = I`` when it is wider (rows orthonormal).

    Weight decay: for C_in != C_out torch's default map is ``householder``, which reads the
    sign of each reflection from the diagonal of the unconstrained parameter *truncated to an
    integer* (``X.diagonal().int()``, torch 2.14 ``_Orthogonal.forward``). The loss gives that
    diagonal no gradient, but weight decay (AdamW's, or SGD's) shrinks it from +-1 to below 1
    in magnitude at the first step, the truncation makes it 0, and the weight becomes the zero
    matrix for good: the block's loss then stays constant and sends the student no gradient.
    The authors' code (the same parametrisation, trained with AdamW weight decay on 2-D
    parameters) is exposed to the same; here the diagonal is put back to its sign (+-1) before
    each forward, which is what the parametrisation stores at initialisation, changes nothing
    while no decay acts on it, and leaves decay on the reflections themselves. Found with
    ``tools/analysis/grad_shares.py`` (a zero gradient share; docs/analysis.md).

    Args:
        in_channels, out_channels (int): C_in (student) and C_out (teacher).
        affine (bool): learnable per-output-channel scale (init 1) and bias (init 0) after the
            orthogonal map, the authors' detection variant. Default False.
    Shapes: (..., C_in) -> (..., C_out).
    """

    def __init__(self, in_channels: int, out_channels: int, affine: bool = False,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.linear = parametrizations.orthogonal(nn.Linear(in_channels, out_channels,
                                                            bias=False))
        # Only torch's householder map (C_in != C_out) reads the truncated diagonal.
        self._householder = str(
            self.linear.parametrizations.weight[0].orthogonal_map).endswith('householder')
        self.affine = affine
        if affine:
            self.scale = nn.Parameter(torch.ones(out_channels))
            self.bias = nn.Parameter(torch.zeros(out_channels))

    @property
    def weight(self) -> torch.Tensor:
        """The current orthogonal weight (C_out, C_in)."""
        return self.linear.weight

    def _keep_unit_diagonal(self) -> None:
        """Householder map only: the unconstrained parameter's diagonal back to its sign
        (+-1; +1 where it is 0), undoing weight decay on it (see the class docstring)."""
        if not self._householder:
            return
        with torch.no_grad():
            diag = self.linear.parametrizations.weight.original.diagonal(dim1=-2, dim2=-1)
            diag.copy_(torch.where(diag < 0, -1.0, 1.0).to(diag.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._keep_unit_diagonal()
        # The orthogonal weight is computed outside autocast (in the parameter's float32): only
        # the product runs in the autocast dtype, so AMP cannot break the parametrisation.
        with torch.autocast(device_type=x.device.type, enabled=False):
            weight = self.linear.weight
        out = F.linear(x, weight.to(x.dtype))
        if self.affine:
            out = out * self.scale + self.bias
        return out


def standardize_per_sample(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Zero mean, unit variance over the channels of each token (layer norm without affine).
    x (M, C)."""
    return F.layer_norm(x, x.shape[-1:], eps=eps)


def standardize_per_channel(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Zero mean, unit variance of each channel over all M tokens of the batch (batch norm
    statistics of this batch, no affine, no running averages). x (M, C)."""
    mean = x.mean(dim=0, keepdim=True)
    var = x.var(dim=0, unbiased=False, keepdim=True)
    return (x - mean) / (var + eps).sqrt()


def whiten(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """ZCA whitening: centred tokens with (approximately) identity covariance. x (M, C).

    The covariance is shrunk towards ``eps * mean eigenvalue * I`` before its inverse square
    root is taken (in float64), so batches with fewer tokens than channels (a singular
    covariance) give finite outputs; with M >> C and small ``eps`` the result has identity
    covariance. The statistics are detached (the target is a teacher feature).
    """
    dtype = x.dtype
    x = x.double()
    x = x - x.mean(dim=0, keepdim=True)
    with torch.no_grad():
        cov = x.t() @ x / max(x.shape[0] - 1, 1)
        shrink = eps * cov.diagonal().mean().clamp_min(1e-12)
        cov = cov + shrink * torch.eye(cov.shape[0], dtype=cov.dtype, device=cov.device)
        eigval, eigvec = torch.linalg.eigh(cov)
        inv_sqrt = eigvec @ torch.diag(eigval.clamp_min(shrink).rsqrt()) @ eigvec.t()
    return (x @ inv_sqrt).to(dtype)


NORMALIZATIONS = {
    'sample': standardize_per_sample,    # classification
    'batch': standardize_per_channel,    # dense tasks (detection, segmentation)
    'whiten': whiten,                    # generation
    'none': lambda x, eps=0.0: x,
}


def as_tokens(x: torch.Tensor) -> torch.Tensor:
    """(N, C) -> (N, C); (N, L, C) -> (N*L, C); (N, C, H, W) -> (N*H*W, C), positions as tokens."""
    if x.dim() == 2:
        return x
    if x.dim() == 3:
        return x.reshape(-1, x.shape[-1])
    if x.dim() == 4:
        return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])
    raise ValueError(f'VkD expects (N, C), (N, L, C) or (N, C, H, W), got {tuple(x.shape)}.')


@MODELS.register_module()
class VkD(LevelwiseMethod):
    """Orthogonal projection + task-specific normalisation + smooth L1.

    Inputs per level: vectors (N, C), tokens (N, L, C) or maps (N, C, H, W) (positions are
    tokens; a student map of another size is resized bilinearly to the teacher's, token counts
    must match). ``pool=True`` averages tokens / positions first (the classification setting:
    mean of the student's patch tokens vs the teacher's globally pooled last stage).
    FPN tuples: one projector per level, or one for all with ``share_levels=True``.

    Args:
        normalize (str): target normalisation: 'sample' (per-token standardisation over
            channels, classification), 'batch' (per-channel standardisation over all tokens
            of the batch, dense tasks), 'whiten' (identity covariance, generation) or 'none'.
            Default 'sample'.
        normalize_student (bool, optional): also normalise the projected student the same way.
            Default None = only for 'batch', as the paper does for detection.
        affine (bool): per-channel scale and bias after the projector (detection variant).
        distance (str): 'smooth_l1' (default, paper) or 'l2' (MSE).
        beta (float): smooth L1 transition point. Default 1.0 (paper).
        pool (bool): average tokens / positions before projecting. Default False.
        skip_tokens (int): leading tokens of (N, L, C) inputs to drop first (1 for a ViT's class
            token, so pooling averages the patch tokens only, as the paper does). Default 0.
        eps (float): numerical floor of the normalisations. Default 1e-5.
        loss_name (str): key of the returned loss. Default 'loss_vkd'.

    Block: one point (or several levels) per side, e.g. classification
    ``student='backbone.ln1'`` (ViT tokens, ``pool=True, skip_tokens=1``) with
    ``teacher='neck'`` (the pooled last stage); detection ``'neck'`` on both sides with
    ``normalize='batch', affine=True``; segmentation ``'backbone.layer4'`` with
    ``normalize='batch'``. Returns ``loss_vkd``.

    References:
        Paper: Miles, Elezi, Deng, "VkD: Improving Knowledge Distillation using Orthogonal
            Projections", CVPR 2024 (arXiv 2403.06213).
        Code: the authors', https://github.com/roymiles/vkd.
    """

    def __init__(self, normalize: Literal['sample', 'batch', 'whiten', 'none'] = 'sample',
                 normalize_student: Optional[bool] = None, affine: bool = False,
                 distance: Literal['smooth_l1', 'l2'] = 'smooth_l1',
                 beta: NonNegativeFloat = 1.0, pool: bool = False,
                 skip_tokens: NonNegativeInt = 0, eps: PositiveFloat = 1e-5,
                 loss_name: LossName = 'loss_vkd', **kwargs):
        super().__init__(**kwargs)
        self.normalize = normalize
        self.normalize_student = (normalize == 'batch' if normalize_student is None
                                  else normalize_student)
        self.affine, self.distance, self.beta = affine, distance, beta
        self.pool, self.skip_tokens = pool, skip_tokens
        self.eps, self.loss_name = eps, loss_name

    def _tokens(self, x: torch.Tensor, ref: Optional[torch.Tensor] = None) -> torch.Tensor:
        if x.dim() == 3 and self.skip_tokens:
            x = x[:, self.skip_tokens:]
        if self.pool and x.dim() > 2:
            return x.mean(dim=1) if x.dim() == 3 else x.flatten(2).mean(dim=2)
        if ref is not None and x.dim() == 4:
            x = resize_like(x, ref)
        return as_tokens(x)

    def build_level(self, student, teacher):
        s, t = self._tokens(student, teacher), self._tokens(teacher)
        return OrthogonalProjector(s.shape[-1], t.shape[-1], affine=self.affine)

    def level_loss(self, student, teacher, connector, data_samples=None
                   ) -> Dict[str, torch.Tensor]:
        s, t = self._tokens(student, teacher), self._tokens(teacher)
        if s.shape[0] != t.shape[0]:
            raise ValueError(f'VkD: student gives {s.shape[0]} tokens and teacher {t.shape[0]}; '
                             'use pool=True or record features with matching token counts.')
        norm = NORMALIZATIONS[self.normalize]
        projected = connector(s).float()
        target = norm(t.float(), self.eps)
        if self.normalize_student:
            projected = norm(projected, self.eps)
        if self.distance == 'smooth_l1':
            loss = F.smooth_l1_loss(projected, target, beta=self.beta)
        else:
            loss = F.mse_loss(projected, target)
        return {self.loss_name: loss}
