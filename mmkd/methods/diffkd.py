"""DiffKD: "Knowledge Diffusion for Distillation" (Huang et al., NeurIPS 2023, arXiv 2305.15712).

The student feature is treated as a noisy version of the teacher feature. A light diffusion model
is trained on the (detached) teacher features; during distillation the projected student feature
is mixed with Gaussian noise by an adaptive amount, denoised by a few DDIM steps, projected, and
matched to the teacher feature. Data flow of one level (names follow the authors' code)::

    student s (N, C_s, H, W) --trans 1x1--> s' (N, C, H, W)
    eps ~ N(0, I);  gamma = noise_adapter(s') in (0, 1) per sample
    x = gamma * s' + (1 - gamma) * eps                       # noisy start (linear mix)
    for t in timesteps:  x <- DDIM_step(denoiser(x, t), t, x)  # e.g. t = 400, 300, 200, 100, 0
    refined = proj(x)                                        # 1x1 conv + BN
    teacher t (N, C_t, H, W) --[linear AE encoder]--> z (N, C, H, W), detached
    loss_kd   = distance(refined, z)           # gradient reaches the student through the chain
    loss_ddim = MSE(denoiser(sqrt(abar_u) z + sqrt(1 - abar_u) n, u), n),  u ~ U{0..T-1}
    loss_ae   = MSE(decoder(z_hidden), t)      # only with the autoencoder; trains only the AE

Tokens (N, L, C) (ViT / Swin features) are laid out as maps before anything else, as the
authors do for their Swin teachers and students (``_reshape_BCHW`` in their ``kd_loss.py``): the
first ``skip_tokens`` (a class token) are dropped and the remaining L' tokens are placed row by
row on an h x w grid, h = w = sqrt(L') unless ``token_shape`` is given.

Nothing of this runs at inference: the module lives in the distiller, not in the student.
"""
import math
from typing import Annotated, Dict, List, Literal, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule

from ..losses import build_distance
from ..registry import MODELS
from ..utils.arguments import (SIDES, Described, Interval, NonNegativeFloat, NonNegativeInt,
                               PerSide, PositiveInt)
from .base import LevelwiseMethod, resize_like


def tokens_to_map(x: torch.Tensor, skip_tokens: int = 0,
                  shape: Optional[Sequence[int]] = None, name: str = 'tokens') -> torch.Tensor:
    """(N, L, C) tokens -> (N, C, h, w) map.

    The first ``skip_tokens`` tokens (class / distillation tokens) are dropped; token i of the
    remaining L' goes to row i // w, column i % w, the row-major order of ViT and Swin patch
    tokens and of the authors' ``x.transpose(-2, -1).reshape(B, C, H, W)``. The grid is square
    (h = w = sqrt(L'), the authors' rule) unless ``shape=(h, w)`` is given; a token count that
    fits neither is an error naming ``name`` and the shapes (the authors' ``int(sqrt(L))``
    would fail later in the reshape).
    """
    n, length, channels = x.shape
    if not 0 <= skip_tokens < length:
        raise ValueError(f'DiffKD: {name} of shape {tuple(x.shape)} have {length} tokens; '
                         f'skip_tokens={skip_tokens} must leave at least one.')
    remaining = length - skip_tokens
    if shape is None:
        side = math.isqrt(remaining)
        if side * side != remaining:
            raise ValueError(
                f'DiffKD: {name} of shape {tuple(x.shape)} leave {remaining} tokens after '
                f'skip_tokens={skip_tokens}, not a square grid; give the grid with '
                f'token_shape=(h, w), h * w = {remaining} (dict(student=..., teacher=...) for '
                'one side), or drop extra leading tokens with skip_tokens.')
        h = w = side
    else:
        h, w = shape
        if h * w != remaining:
            raise ValueError(f'DiffKD: {name} of shape {tuple(x.shape)} leave {remaining} '
                             f'tokens after skip_tokens={skip_tokens}, but '
                             f'token_shape={tuple(shape)} holds {h * w}.')
    # The reshape is a channels-last view; made contiguous so that the noise drawn with
    # randn_like (which follows the input's strides) and the convolutions see exactly what the
    # same map in (N, C, H, W) layout gives.
    return x[:, skip_tokens:].transpose(1, 2).reshape(n, channels, h, w).contiguous()


class DDIMSampler(nn.Module):
    """DDIM maths (Song et al., 2021) for epsilon prediction with eta = 0 (deterministic).

    Linear betas from ``beta_start`` to ``beta_end`` over ``num_train_timesteps``, the DDPM
    schedule the authors use through diffusers' ``DDIMScheduler(clip_sample=False,
    beta_schedule='linear')`` (whose ``set_alpha_to_one=True`` gives abar = 1 after step t = 0).
    No parameters; the cumulative products are non-persistent buffers.
    """

    def __init__(self, num_train_timesteps: int = 1000, beta_start: float = 1e-4,
                 beta_end: float = 0.02):
        super().__init__()
        self.num_train_timesteps = num_train_timesteps
        betas = torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float32)
        self.register_buffer('alphas_cumprod', torch.cumprod(1.0 - betas, dim=0),
                             persistent=False)

    def _abar(self, t: Union[int, torch.Tensor], ref: torch.Tensor) -> torch.Tensor:
        """abar_t broadcastable against ``ref`` (N, ...); ``t`` is an int or (N,) indices;
        a negative t means "after the last step" (abar = 1)."""
        if isinstance(t, int):
            return self.alphas_cumprod[t] if t >= 0 else self.alphas_cumprod.new_tensor(1.0)
        return self.alphas_cumprod[t].view(-1, *([1] * (ref.dim() - 1)))

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Forward process q(x_t | x_0): ``sqrt(abar_t) x0 + sqrt(1 - abar_t) noise``, t (N,)."""
        abar = self._abar(t, x0)
        return abar.sqrt() * x0 + (1.0 - abar).sqrt() * noise

    def step(self, eps: torch.Tensor, t: int, x: torch.Tensor, t_prev: int) -> torch.Tensor:
        """One DDIM update x_t -> x_{t_prev} (eta = 0)::

            x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)
            x_prev = sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev) eps
        """
        abar_t, abar_prev = self._abar(t, x), self._abar(t_prev, x)
        x0_hat = (x - (1.0 - abar_t).sqrt() * eps) / abar_t.sqrt()
        return abar_prev.sqrt() * x0_hat + (1.0 - abar_prev).sqrt() * eps

    def inference_timesteps(self, num_steps: int, start_timestep: Optional[int] = None
                            ) -> List[int]:
        """Denoising timesteps, largest first.

        ``start_timestep=None`` reproduces the authors' code: diffusers' ``set_timesteps(2 *
        num_steps)`` ('leading' spacing, ratio T // (2 * num_steps)) and only the second half is
        run, i.e. [400, 300, 200, 100, 0] for 5 steps of T = 1000. An int starts there and
        spaces ``num_steps`` timesteps evenly down to 0 (the paper's text says t = 500).
        """
        if num_steps < 1:
            raise ValueError(f'num_steps must be >= 1, got {num_steps}')
        if start_timestep is None:
            ratio = self.num_train_timesteps // (2 * num_steps)
            return [ratio * (num_steps - 1 - i) for i in range(num_steps)]
        if not 0 <= start_timestep < self.num_train_timesteps:
            raise ValueError(f'start_timestep must be in [0, {self.num_train_timesteps}), '
                             f'got {start_timestep}')
        if num_steps == 1:
            return [start_timestep]
        return [round(start_timestep * (num_steps - 1 - i) / (num_steps - 1))
                for i in range(num_steps)]


class DiffKDBottleneck(nn.Module):
    """Residual bottleneck: 1x1 C->C/r, BN, ReLU, 3x3, BN, ReLU, 1x1 ->C, BN, + identity
    (no ReLU after the addition, as in the authors' code)."""

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        mid = max(1, channels // reduction)
        self.block = nn.Sequential(
            nn.Conv2d(channels, mid, 1), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
            nn.Conv2d(mid, mid, 3, padding=1), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
            nn.Conv2d(mid, channels, 1), nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


def _mlp(channels: int, hidden: int, depth: int) -> List[nn.Module]:
    """``depth`` x (1x1 C->hidden, BN, ReLU, 1x1 hidden->C, BN); the ReLU-free BN closes each."""
    layers: List[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Conv2d(channels, hidden, 1), nn.BatchNorm2d(hidden), nn.ReLU(inplace=True),
                   nn.Conv2d(hidden, channels, 1), nn.BatchNorm2d(channels)]
    return layers


class DiffKDDenoiser(BaseModule):
    """The light noise-prediction network.

    A learned timestep embedding (``Embedding(1280, C)`` in the authors' code) is added to the
    input, then ``kernel_size=3`` runs two residual bottlenecks and a 1x1 conv + BN (feature
    maps), ``kernel_size=1`` an MLP of 1x1 convs (vectors/logits, seen as (N, C, 1, 1))::

        1x1 C->4C, BN, ReLU, 4C->C, BN, C->4C, BN, ReLU, 4C->C

    (the authors' MLP has no BN after its last layer). Input (N, C, H, W) and timesteps (N,)
    or a scalar; output: predicted noise (N, C, H, W).
    """

    def __init__(self, channels: int, kernel_size: int = 3, num_time_embeddings: int = 1280,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.time_embedding = nn.Embedding(num_time_embeddings, channels)
        if kernel_size == 3:
            self.body = nn.Sequential(
                DiffKDBottleneck(channels), DiffKDBottleneck(channels),
                nn.Conv2d(channels, channels, 1), nn.BatchNorm2d(channels))
        elif kernel_size == 1:
            self.body = nn.Sequential(*_mlp(channels, 4 * channels, 2)[:-1])
        else:
            raise ValueError(f'DiffKDDenoiser kernel_size must be 1 or 3, got {kernel_size}')

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = t.expand(x.shape[0]) if t.dim() == 0 else t
        return self.body(x + self.time_embedding(t)[:, :, None, None].to(x.dtype))


class DiffKDNoiseAdapter(BaseModule):
    """Predicts, per sample, how much of the student feature to keep in the noisy start.

    ``kernel_size=3``: bottleneck (reduction 8) + global average pooling; ``kernel_size=1``:
    1x1 C->2C, BN, ReLU, 2C->C, BN. Then Linear(C, 2) and a softmax; gamma is its first entry.
    Input (N, C, H, W) -> gamma (N,) in (0, 1).
    """

    def __init__(self, channels: int, kernel_size: int = 3, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if kernel_size == 3:
            self.feat = nn.Sequential(DiffKDBottleneck(channels, reduction=8),
                                      nn.AdaptiveAvgPool2d(1))
        elif kernel_size == 1:
            self.feat = nn.Sequential(*_mlp(channels, 2 * channels, 1))
        else:
            raise ValueError(f'DiffKDNoiseAdapter kernel_size must be 1 or 3, got {kernel_size}')
        self.pred = nn.Linear(channels, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pred(self.feat(x).flatten(1)).softmax(dim=1)[:, 0]


class LinearAutoEncoder(BaseModule):
    """Encoder 1x1 conv + BN (C -> latent), decoder 1x1 conv (latent -> C).

    Input (N, C, H, W) -> (latent (N, latent, H, W), reconstruction (N, C, H, W)).
    """

    def __init__(self, channels: int, latent_channels: int, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.encoder = nn.Sequential(nn.Conv2d(channels, latent_channels, 1),
                                     nn.BatchNorm2d(latent_channels))
        self.decoder = nn.Conv2d(latent_channels, channels, 1)

    def forward(self, x: torch.Tensor):
        latent = self.encoder(x)
        return latent, self.decoder(latent)


class DiffKDLevel(BaseModule):
    """All DiffKD modules for one (student, teacher) feature pair: trans, optional autoencoder,
    denoiser, noise adapter and proj. Sizes: student C_s, teacher C_t, working width C = the
    autoencoder latent when it is used, C_t otherwise."""

    def __init__(self, student_channels: int, teacher_channels: int, kernel_size: int = 3,
                 use_ae: bool = False, ae_channels: Optional[int] = None,
                 use_noise_adapter: bool = True, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        channels = teacher_channels
        self.ae = None
        if use_ae:
            channels = ae_channels or teacher_channels // 2
            self.ae = LinearAutoEncoder(teacher_channels, channels)
        self.trans = nn.Conv2d(student_channels, channels, 1)
        self.denoiser = DiffKDDenoiser(channels, kernel_size)
        self.noise_adapter = DiffKDNoiseAdapter(channels, kernel_size) if use_noise_adapter \
            else None
        self.proj = nn.Sequential(nn.Conv2d(channels, channels, 1), nn.BatchNorm2d(channels))


#: A beta of the DDPM schedule: 1 would give abar = 0 and divide by zero in the DDIM step.
Beta = Annotated[float, Interval(gt=0, lt=1)]
#: The (h, w) token grid of one side, None for a square one.
TokenShape = Annotated[Optional[Tuple[PositiveInt, PositiveInt]],
                       Described('None or (h, w), two ints >= 1')]


@MODELS.register_module()
class DiffKD(LevelwiseMethod):
    """Diffusion-denoised feature (or logit) distillation.

    Inputs per level: feature maps (N, C, H, W), tokens (N, L, C) (laid out as maps, see
    :func:`tokens_to_map`) or vectors / logits (N, C) (handled as 1x1 maps); FPN tuples give one
    :class:`DiffKDLevel` per level, or one shared by all with ``share_levels=True``. A student
    map (or token grid) of another spatial size is resized bilinearly to the teacher's: the
    authors' token pairs (Swin-L -> Swin-T ``norm`` outputs, 7x7 each) have equal grids and
    their code has no rule for unequal ones, so mmkd's rule for maps applies. Channels differ
    freely (``trans``, a 1x1 conv, as in the authors' code). Returns ``loss_kd`` (distance
    between refined student and teacher / latent), ``loss_ddim`` (noise-prediction loss on the
    detached teacher), ``loss_ae`` (reconstruction, with ``use_ae``) and the logged diagnostic
    ``gamma`` (mean noise-adapter output; values stuck near 1 mean the student is treated as
    almost noise-free).

    Args:
        distance (str | dict): 'mse' (feature maps, default), 'kl' (logits, ``dict(type='kl',
            tau=1.0)``) or 'dist' (segmentation maps, ``dict(type='dist', beta=1, gamma=1)``).
        use_ae (bool): linear autoencoder on the teacher feature (the ImageNet setting).
            Default False.
        ae_channels (int, optional): latent width; default teacher channels // 2 (authors'
            default). The ImageNet runs use 1024.
        kernel_size (int, optional): 3 (bottleneck denoiser for maps) or 1 (MLP for vectors);
            default: 1 for vectors and 1x1 maps, else 3.
        inference_steps (int): DDIM steps. Default 5 (paper ablation: 1 / 5 / 20 steps give
            73.36 / 73.62 / 73.65 on R50 -> MBV1).
        start_timestep (int, optional): timestep of the first denoising step. Default None =
            the authors' code ([400, ..., 0] for 5 steps); the paper's text says 500.
        num_train_timesteps (int), beta_start, beta_end: the DDPM schedule (1000, 1e-4, 0.02).
        use_noise_adapter (bool): adaptive noisy start; False starts denoising from the
            projected student feature itself (the paper's ablation). Default True.
        loss_weights (dict): weights of 'kd', 'ddim' and 'ae' (all 1 in the paper; the block's
            ``loss_weight`` multiplies them all, e.g. 5 for detection).
        skip_tokens (int | dict): leading tokens of (N, L, C) inputs to drop before the
            reshape (1 for a ViT's class token, 2 for DeiT's class and distillation tokens;
            the name of VkD's option). An int applies to both sides' token inputs,
            ``dict(student=..., teacher=...)`` to each side (a missing side: 0). Ignored for
            maps and vectors. Default 0 (the authors' Swin tokens have none).
        token_shape (tuple | dict, optional): the (h, w) grid of the tokens left after
            ``skip_tokens``, for non-square grids; an int-pair for both sides or
            ``dict(student=(h, w), teacher=(h, w))``. Default None: square, h = w = sqrt(L')
            (authors). A fixed grid must match every batch's token count.
        share_levels, level_reduction: see :class:`LevelwiseMethod`.

    Block: one value or several levels per side, e.g. ``student='neck', teacher='neck'`` (every
    FPN level, ``distance='mse'``), ``'backbone'`` (the last stage's maps, with ``use_ae=True``
    on ImageNet) or ``'head.fc'`` (logits, ``distance=dict(type='kl', tau=1.0)``); the
    authors' classification setting is two blocks, one per branch. Returns ``loss_kd``,
    ``loss_ddim``, ``loss_ae`` (with ``use_ae``) and logs ``gamma`` (above).

    References:
        Paper: Huang, Zhang, Zheng, You, Wang, Qian, Xu, "Knowledge Diffusion for
            Distillation", NeurIPS 2023 (arXiv 2305.15712).
        Code: the authors', https://github.com/hunto/DiffKD (the method) and
            https://github.com/hunto/image_classification_sota (their training recipes).
    """

    LOSS_TERMS = ('kd', 'ddim', 'ae')

    def __init__(self, distance: Union[str, dict] = 'mse', use_ae: bool = False,
                 ae_channels: Optional[PositiveInt] = None,
                 kernel_size: Optional[Literal[1, 3]] = None, inference_steps: PositiveInt = 5,
                 start_timestep: Optional[NonNegativeInt] = None,
                 num_train_timesteps: PositiveInt = 1000, beta_start: Beta = 1e-4,
                 beta_end: Beta = 0.02, use_noise_adapter: bool = True,
                 loss_weights: Optional[Dict[str, NonNegativeFloat]] = None,
                 skip_tokens: PerSide[NonNegativeInt] = 0,
                 token_shape: PerSide[TokenShape] = None, **kwargs):
        super().__init__(**kwargs)
        self.skip_tokens = self._per_side(skip_tokens, 0)
        self.token_shape = self._per_side(token_shape, None)
        self.distance = build_distance(distance)
        self.use_ae, self.ae_channels = use_ae, ae_channels
        self.kernel_size = kernel_size
        self.use_noise_adapter = use_noise_adapter
        self.sampler = DDIMSampler(num_train_timesteps, beta_start, beta_end)
        self.timesteps = self.sampler.inference_timesteps(inference_steps, start_timestep)
        unknown = sorted(set(loss_weights or {}) - set(self.LOSS_TERMS))
        if unknown:
            raise ValueError(f'DiffKD loss_weights got unknown terms {unknown}; valid terms: '
                             f'{list(self.LOSS_TERMS)}.')
        self.loss_weights = {k: 1.0 for k in self.LOSS_TERMS}
        self.loss_weights.update(loss_weights or {})

    @staticmethod
    def _per_side(value, default) -> Dict[str, object]:
        """One value for both sides, or ``dict(student=..., teacher=...)`` (keys checked by
        the argument schema; a missing side: ``default``)."""
        if not isinstance(value, dict):
            return {side: value for side in SIDES}
        return {side: value.get(side, default) for side in SIDES}

    def _as_map(self, x: torch.Tensor, side: str) -> torch.Tensor:
        """(N, C) -> (N, C, 1, 1); (N, L, C) -> (N, C, h, w) (:func:`tokens_to_map` with this
        side's ``skip_tokens`` / ``token_shape``); (N, C, H, W) unchanged."""
        if x.dim() == 2:
            return x[:, :, None, None]
        if x.dim() == 3:
            return tokens_to_map(x, self.skip_tokens[side], self.token_shape[side],
                                 f'{side} tokens')
        if x.dim() != 4:
            raise ValueError(f'DiffKD expects (N, C, H, W) maps, (N, L, C) tokens or (N, C) '
                             f'vectors, got {side} shape {tuple(x.shape)}.')
        return x

    def build_level(self, student, teacher):
        s, t = self._as_map(student, 'student'), self._as_map(teacher, 'teacher')
        kernel_size = self.kernel_size or (1 if t.shape[2:] == (1, 1) else 3)
        return DiffKDLevel(s.shape[1], t.shape[1], kernel_size, self.use_ae, self.ae_channels,
                           self.use_noise_adapter)

    def denoise(self, level: DiffKDLevel, student: torch.Tensor):
        """Noisy start + DDIM chain + proj. student (N, C, H, W) after ``trans`` ->
        (refined (N, C, H, W), gamma (N,) or None). Nothing is detached: the distance loss
        trains the student, trans, adapter, denoiser and proj through this chain."""
        gamma = None
        x = student
        if level.noise_adapter is not None:
            gamma = level.noise_adapter(student)
            g = gamma.view(-1, 1, 1, 1).to(student.dtype)
            x = g * student + (1 - g) * torch.randn_like(student)
        for i, t in enumerate(self.timesteps):
            t_prev = self.timesteps[i + 1] if i + 1 < len(self.timesteps) else -1
            eps = level.denoiser(x, torch.tensor(t, device=x.device))
            x = self.sampler.step(eps, t, x, t_prev)
        return level.proj(x), gamma

    def diffusion_loss(self, level: DiffKDLevel, target: torch.Tensor) -> torch.Tensor:
        """Noise-prediction MSE on the detached target (N, C, H, W), one timestep per sample."""
        target = target.detach()
        t = torch.randint(0, self.sampler.num_train_timesteps, (target.shape[0], ),
                          device=target.device)
        noise = torch.randn_like(target)
        pred = level.denoiser(self.sampler.add_noise(target, noise, t), t)
        return F.mse_loss(pred.float(), noise.float())

    def level_loss(self, student, teacher, level: DiffKDLevel, data_samples=None
                   ) -> Dict[str, torch.Tensor]:
        vector = teacher.dim() == 2
        s, t = self._as_map(student, 'student'), self._as_map(teacher, 'teacher')
        s = level.trans(resize_like(s, t))
        losses = {}
        if level.ae is not None:
            latent, reconstruction = level.ae(t)
            losses['loss_ae'] = self.loss_weights['ae'] * F.mse_loss(reconstruction.float(),
                                                                     t.float())
            t = latent.detach()
        refined, gamma = self.denoise(level, s)
        if vector:
            refined, target = refined.flatten(1), t.flatten(1)
        else:
            target = t
        losses['loss_kd'] = self.loss_weights['kd'] * self.distance(refined, target)
        losses['loss_ddim'] = self.loss_weights['ddim'] * self.diffusion_loss(level, t)
        if gamma is not None:
            losses['gamma'] = gamma.detach().float().mean()
        return losses
