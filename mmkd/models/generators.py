"""Image generators for data-free distillation (:class:`mmkd.distillers.DataFreeDistiller`).

Both are the small DCGAN-style generators of the papers, registered in ``mmkd.registry.MODELS``
(``generator=dict(type='mmkd.DAFLGenerator', ...)``). Data flow, latent z (N, latent_dim)::

    z -> Linear(latent_dim, hidden * s^2) -> view (N, hidden, s, s)      s = img_size // 4
      -> BN(hidden) -> x2 nearest -> Conv3x3 hidden->hidden, BN, LeakyReLU(0.2)
      -> x2 nearest -> Conv3x3 hidden->hidden/2, BN, LeakyReLU(0.2) -> Conv3x3 hidden/2->C
      -> DAFLGenerator: Tanh, BN(C, affine=False)       (N, C, img_size, img_size)
         ZSKTGenerator: BN(C, affine=True)

The last batch norm puts every channel at zero mean and unit variance over the batch: the
images are already in the normalised space of the models (the student's data preprocessor's
output), which is where the distiller feeds them.

Module names are the authors', so their generator checkpoints load unchanged:

* :class:`DAFLGenerator` -- DAFL (Chen et al., ICCV 2019), ``Generator`` in
  huawei-noah/Efficient-Computing ``Data-Efficient-Model-Compression/DAFL/DAFL-train.py``
  (commit 225ddd2e): ``l1``, ``conv_blocks0/1/2``, hidden 128, BN eps 0.8 (``BatchNorm2d(128,
  0.8)``: the positional 0.8 is eps), latent 100 (``--latent_dim``; MMRazor's CIFAR config uses
  1000). DFAD (Fang et al., 2019; VainF/Data-Free-Adversarial-Distillation ``network/gan.py``
  ``GeneratorA``, commit c161591a) is the same network with ``ngf=64`` (hidden = 2 ngf = 128) and
  BN eps 1e-5: ``bn_eps=1e-5``, latent 256 (``--nz`` of ``DFAD_cifar.py``; 100 for MNIST).
* :class:`ZSKTGenerator` -- ZSKT (Micaelli & Storkey, NeurIPS 2019), ``models/generator.py`` of
  polo5/ZeroShotKnowledgeTransfer (commit e24915d7): ``layers`` (a Sequential), latent 100, no
  Tanh, an affine last BN, BN eps 1e-5. Their network is fixed at 32x32 (``8**2``); here
  ``img_size // 4``.

``img_size`` and ``channels`` default to None: the distiller fills them from its
``dry_run_input_shape`` (N, C, H, W), the student's input. MMRazor's ``DAFLGenerator`` /
``ZSKTGenerator`` (``mmrazor/models/architectures/generators``) are the same networks with other
module names and always 3 channels.
"""
from typing import Annotated, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule

from ..registry import MODELS
from ..utils.arguments import Described, InitCfg, Interval, PositiveFloat, PositiveInt

#: An image side the two x2 upsamplings can reach: a multiple of 4.
ImageSize = Annotated[int, Interval(ge=4), Described('an integer >= 4, a multiple of 4')]


class _View(nn.Module):
    """``x.view(shape)`` as a module (ZSKT's ``View``)."""

    def __init__(self, shape):
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x):
        return x.view(self.shape)


class BaseGenerator(BaseModule):
    """A generator of images (N, channels, img_size, img_size) from latents (N, latent_dim).

    Args:
        latent_dim (int): size of the latent vector.
        hidden_channels (int): channels of the first feature map (halved before the output).
        img_size (int, optional): side of the square output, a multiple of 4; None: filled by
            the distiller from its ``dry_run_input_shape``.
        channels (int, optional): output channels; None: filled likewise.
        leaky_slope (float): LeakyReLU slope. Default 0.2 (all three papers' code).
        init_cfg (dict, optional): MMEngine initialisation; None: PyTorch's defaults (the
            authors').
    """

    def __init__(self, latent_dim: PositiveInt, hidden_channels: PositiveInt,
                 img_size: Optional[ImageSize] = None, channels: Optional[PositiveInt] = None,
                 leaky_slope: PositiveFloat = 0.2, init_cfg: InitCfg = None):
        super().__init__(init_cfg=init_cfg)
        if img_size is None or channels is None:
            raise ValueError(f'{type(self).__name__} needs img_size and channels (the '
                             'DataFreeDistiller fills them from model.dry_run_input_shape).')
        if img_size % 4:
            raise ValueError(f'{type(self).__name__}: img_size must be a multiple of 4 (two x2 '
                             f'upsamplings from img_size // 4), got {img_size}.')
        if hidden_channels < 2:
            raise ValueError(f'{type(self).__name__}: hidden_channels must be >= 2 (halved '
                             f'before the output), got {hidden_channels}.')
        self.latent_dim = latent_dim
        self.hidden_channels = hidden_channels
        self.img_size = img_size
        self.channels = channels
        self.init_size = img_size // 4

    def check_latents(self, z: torch.Tensor) -> torch.Tensor:
        z = z.reshape(z.shape[0], -1)  # DFAD draws (N, nz, 1, 1)
        if z.shape[1] != self.latent_dim:
            raise ValueError(f'{type(self).__name__}: latents of size {z.shape[1]}, expected '
                             f'latent_dim={self.latent_dim}.')
        return z


@MODELS.register_module()
class DAFLGenerator(BaseGenerator):
    """DAFL's generator (DFAD's ``GeneratorA``): module docstring.

    Args:
        latent_dim (int): Default 100 (DAFL; DFAD: 256 on CIFAR, 100 on MNIST).
        hidden_channels (int): Default 128 (both).
        bn_eps (float): eps of the two inner batch norms. Default 0.8 (DAFL's
            ``BatchNorm2d(c, 0.8)``; DFAD: 1e-5).
        img_size, channels, leaky_slope, init_cfg: see :class:`BaseGenerator`.
    """

    def __init__(self, latent_dim: PositiveInt = 100, hidden_channels: PositiveInt = 128,
                 img_size: Optional[ImageSize] = None, channels: Optional[PositiveInt] = None,
                 bn_eps: PositiveFloat = 0.8, leaky_slope: PositiveFloat = 0.2,
                 init_cfg: InitCfg = None):
        super().__init__(latent_dim, hidden_channels, img_size, channels, leaky_slope, init_cfg)
        hidden = hidden_channels
        self.l1 = nn.Sequential(nn.Linear(latent_dim, hidden * self.init_size ** 2))
        self.conv_blocks0 = nn.Sequential(nn.BatchNorm2d(hidden))
        self.conv_blocks1 = nn.Sequential(
            nn.Conv2d(hidden, hidden, 3, stride=1, padding=1),
            nn.BatchNorm2d(hidden, bn_eps),
            nn.LeakyReLU(leaky_slope, inplace=True))
        self.conv_blocks2 = nn.Sequential(
            nn.Conv2d(hidden, hidden // 2, 3, stride=1, padding=1),
            nn.BatchNorm2d(hidden // 2, bn_eps),
            nn.LeakyReLU(leaky_slope, inplace=True),
            nn.Conv2d(hidden // 2, channels, 3, stride=1, padding=1),
            nn.Tanh(),
            nn.BatchNorm2d(channels, affine=False))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out = self.l1(self.check_latents(z))
        out = out.view(out.shape[0], self.hidden_channels, self.init_size, self.init_size)
        img = self.conv_blocks0(out)
        img = F.interpolate(img, scale_factor=2)
        img = self.conv_blocks1(img)
        img = F.interpolate(img, scale_factor=2)
        return self.conv_blocks2(img)


@MODELS.register_module()
class ZSKTGenerator(BaseGenerator):
    """ZSKT's generator: module docstring.

    Args:
        latent_dim (int): Default 100 (``--z_dim``).
        hidden_channels (int): Default 128.
        img_size, channels, leaky_slope, init_cfg: see :class:`BaseGenerator`.
    """

    def __init__(self, latent_dim: PositiveInt = 100, hidden_channels: PositiveInt = 128,
                 img_size: Optional[ImageSize] = None, channels: Optional[PositiveInt] = None,
                 leaky_slope: PositiveFloat = 0.2, init_cfg: InitCfg = None):
        super().__init__(latent_dim, hidden_channels, img_size, channels, leaky_slope, init_cfg)
        hidden, s = hidden_channels, self.init_size
        self.layers = nn.Sequential(
            nn.Linear(latent_dim, hidden * s ** 2),
            _View((-1, hidden, s, s)),
            nn.BatchNorm2d(hidden),
            nn.Upsample(scale_factor=2),
            nn.Conv2d(hidden, hidden, 3, stride=1, padding=1),
            nn.BatchNorm2d(hidden),
            nn.LeakyReLU(leaky_slope, inplace=True),
            nn.Upsample(scale_factor=2),
            nn.Conv2d(hidden, hidden // 2, 3, stride=1, padding=1),
            nn.BatchNorm2d(hidden // 2),
            nn.LeakyReLU(leaky_slope, inplace=True),
            nn.Conv2d(hidden // 2, channels, 3, stride=1, padding=1),
            nn.BatchNorm2d(channels, affine=True))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.layers(self.check_latents(z))
