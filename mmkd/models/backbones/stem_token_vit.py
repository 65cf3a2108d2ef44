"""A ViT whose input stems and extra tokens are lists in the config ("stem-token ViT").

The DeiT student of VkD (Miles, Elezi, Deng, CVPR 2024; authors' code roymiles/vkd,
``models/deit.py``), which the authors took from Co-advise / CiVT (Ren et al., CVPR 2022;
OliverRensu/co-advise, ``models.py``)::

    image (N, 3, H, W)
      ├─ stem_1 ─► (N, D, h, w) ─► tokens_1 (N, h*w, D)
      ├─ ...                                             patches = tokens_1 + ... + tokens_S
      └─ stem_S ─► (N, D, h, w) ─► tokens_S (N, h*w, D)
    sequence = [extra token_1, ..., extra token_T, patches] + pos_embed      (N, T + h*w, D)
      ─► mmpretrain TransformerEncoderLayer x L ─► final LayerNorm (``ln1``)

An extra token is ``learned`` (a parameter, e.g. the class token) or the ``mean`` of one stem's
tokens (or of the summed patch tokens), taken before the position embedding is added. VkD:
one conv stem, tokens ``[cls (learned), dist (mean of the conv stem's tokens)]``. Co-advise:
stems ``conv`` and ``inv`` (involution), tokens ``[cls, conv (mean), inv (mean)]``, patches
``conv + inv``; adding a stem is a config change (register the stem module in mmpretrain's
``MODELS`` with an ``embed_dims`` argument, list it in ``stems`` and add a ``mean`` token).
"""
import copy
import math
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.logging import print_log
from mmengine.model import BaseModule, ModuleDict, ModuleList
from mmengine.model.weight_init import trunc_normal_
from mmpretrain.models.backbones.base_backbone import BaseBackbone
from mmpretrain.models.backbones.vision_transformer import (TransformerEncoderLayer,
                                                            VisionTransformer)
from mmpretrain.models.utils import build_norm_layer, resize_pos_embed, to_2tuple
from mmpretrain.registry import MODELS

from .rednet import rednet_stem


def _kaiming_convs(module: nn.Module):
    """The Co-advise / VkD stems' ``init_weight``: ``kaiming_normal_`` (fan_in, gain sqrt 2)
    on every conv weight; biases and norms keep PyTorch's defaults."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight)


@MODELS.register_module()
class ConvPatchStem(BaseModule):
    """The VkD / Co-advise convolutional stem: (N, C_in, H, W) -> (N, D, H / 16, W / 16).

    ``conv k x k, stride s, C_in -> C`` + BN + ReLU, then ``num_convs`` x (``conv 3x3, C -> C``
    + BN + ReLU), then a ``patch_size x patch_size`` stride-``patch_size`` conv ``C -> D`` (with
    bias) as the projection to the embedding width. Defaults are the authors' (``conv_embed``
    in roymiles/vkd ``models/deit.py``): 7x7 stride 2 (padding 3) 3 -> 64, two 3x3 64 -> 64,
    8x8 stride 8 projection, so 224x224 images give 14x14 tokens as DeiT's 16x16 patches do.
    Convolutions before the projection have no bias (BN follows).

    Args:
        embed_dims (int): D, the transformer width (the backbone fills it in).
        in_channels (int): image channels. Default 3.
        channels (int): C, the stem width. Default 64.
        first_kernel, first_stride (int): the first conv. Defaults 7, 2 (padding k // 2).
        num_convs (int): 3x3 convs after the first. Default 2.
        patch_size (int): kernel and stride of the projection. Default 8.
        norm_cfg (dict): norm after each conv but the projection. Default ``dict(type='BN')``.
    Init (when ``init_cfg`` is None): every conv weight (projection included)
    ``kaiming_normal_`` with PyTorch's defaults (fan_in, gain sqrt(2)), as the authors'
    ``init_weight``; the projection's bias keeps PyTorch's default; BN weight 1, bias 0.
    """

    def __init__(self, embed_dims: int, in_channels: int = 3, channels: int = 64,
                 first_kernel: int = 7, first_stride: int = 2, num_convs: int = 2,
                 patch_size: int = 8, norm_cfg: dict = dict(type='BN'), init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        layers = [nn.Conv2d(in_channels, channels, first_kernel, first_stride,
                            first_kernel // 2, bias=False),
                  build_norm_layer(norm_cfg, channels), nn.ReLU(inplace=True)]
        for _ in range(num_convs):
            layers += [nn.Conv2d(channels, channels, 3, 1, 1, bias=False),
                       build_norm_layer(norm_cfg, channels), nn.ReLU(inplace=True)]
        # Names as the authors' conv_embed (conv.*, proj): their checkpoints map key for key.
        self.conv = nn.Sequential(*layers)
        self.proj = nn.Conv2d(channels, embed_dims, patch_size, patch_size)

    def init_weights(self):
        super().init_weights()
        if self.init_cfg is None:
            _kaiming_convs(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C_in, H, W) -> (N, D, h, w)."""
        return self.proj(self.conv(x))


@MODELS.register_module()
class LinearPatchStem(BaseModule):
    """ViT's linear patch embedding as a stem: a ``patch_size`` x ``patch_size`` conv with
    stride ``patch_size``, (N, C_in, H, W) -> (N, D, H / p, W / p). PyTorch's default init.

    Args:
        embed_dims (int): D (the backbone fills it in).
        in_channels (int): Default 3.
        patch_size (int): Default 16 (DeiT).
    """

    def __init__(self, embed_dims: int, in_channels: int = 3, patch_size: int = 16,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.proj = nn.Conv2d(in_channels, embed_dims, patch_size, patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C_in, H, W) -> (N, D, h, w)."""
        return self.proj(x)


@MODELS.register_module()
class InvolutionPatchStem(BaseModule):
    """The Co-advise / CivT involution stem: (N, C_in, H, W) -> (N, D, H / 16, W / 16).

    RedNet's stem (:func:`~mmkd.models.backbones.rednet.rednet_stem`: 3x3 conv, stride
    ``first_stride``, C_in -> C/2 + BN + ReLU, 3x3 involution on C/2, BN, ReLU, 3x3 conv
    C/2 -> C + BN + ReLU), then a ``patch_size x patch_size`` stride-``patch_size`` conv C -> D
    (with bias). Defaults are the authors' (``embed_inv`` in OliverRensu/co-advise
    ``models.py``: RedNet-26's stem, C = 64, stride 2, 8x8 projection), so 224x224 images give
    the same 14x14 grid as the conv stem. Names ``stem`` / ``proj`` as theirs.

    Args:
        embed_dims (int): D (the backbone fills it in).
        in_channels (int): Default 3.
        channels (int): C, RedNet's ``stem_channels`` (the involution runs on C / 2, a multiple
            of 16). Default 64.
        first_stride (int): stride of the first conv. Default 2.
        patch_size (int): kernel and stride of the projection. Default 8.
        norm_cfg (dict): norm of the two convs. Default ``dict(type='BN')``.
        force_fp32 (bool): run the stem in float32 with autocast off, as the authors do (their
            README: the involution does not support mixed precision). Default True.
    Init (when ``init_cfg`` is None): ``kaiming_normal_`` on every conv weight, the
    involution's kernel generator and the projection included (the authors'
    ``init_weight`` applies to all ``nn.Conv2d`` of ``inv_embed``).
    """

    def __init__(self, embed_dims: int, in_channels: int = 3, channels: int = 64,
                 first_stride: int = 2, patch_size: int = 8,
                 norm_cfg: dict = dict(type='BN'), force_fp32: bool = True, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.stem = rednet_stem(in_channels, channels, first_stride, norm_cfg)
        self.proj = nn.Conv2d(channels, embed_dims, patch_size, patch_size)
        self.force_fp32 = force_fp32

    def init_weights(self):
        super().init_weights()
        if self.init_cfg is None:
            _kaiming_convs(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C_in, H, W) -> (N, D, h, w); float32 when ``force_fp32``."""
        if not self.force_fp32:
            return self.proj(self.stem(x))
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self.proj(self.stem(x.float()))


TOKEN_TYPES = ('learned', 'mean')
OUT_TYPES = ('extra_tokens', 'raw', 'featmap')
LAYER_INITS = ('timm', 'mmpretrain')


@MODELS.register_module()
class StemTokenViT(BaseBackbone):
    """Vision transformer with configurable input stems and extra tokens.

    Args:
        arch (str | dict): a name of mmpretrain's ``VisionTransformer.arch_zoo`` ('deit-tiny',
            'deit-small', ...) or a dict with ``embed_dims``, ``num_layers``, ``num_heads``,
            ``feedforward_channels``. Default 'deit-tiny' (D = 192, 12 layers, 3 heads).
        img_size (int | tuple): the training size; sets the position-embedding grid (other
            sizes interpolate it, ``interpolate_mode``). Default 224.
        in_channels (int): image channels, passed to every stem. Default 3.
        stems (sequence of dict): each a stem module config with a unique ``name``; built from
            mmpretrain's ``MODELS`` with ``embed_dims`` (and ``in_channels``) filled in. Every
            stem maps (N, C_in, H, W) to (N, D, h, w) with the same (h, w); the patch tokens
            are the SUM of the stems' flattened outputs. Default: one ``ConvPatchStem`` named
            'conv' (VkD).
        tokens (sequence of dict | str): the extra tokens, in sequence order before the
            patches, each with a unique ``name`` and a ``type``:
            ``'learned'`` (a (1, 1, D) parameter ``<name>_token``; ``init_std``, default 0.02:
            trunc-normal as in DeiT / timm <= 0.4; newer timm draws normal(1e-6) - the
            authors pin no timm version) or ``'mean'`` (the mean over tokens of stem
            ``stem``'s output, or of the summed patch tokens when ``stem`` is None, before the
            position embedding). A string is a learned token of that name. Default:
            ``[cls (learned), dist (mean of stem 'conv')]``, the authors' VkD DeiT.
        out_indices (int | sequence of int): layers whose outputs are returned. Default -1.
        out_type (str): per returned layer, ``'extra_tokens'`` (N, T, D), the extra tokens in
            ``tokens`` order (what ``MultiTokenClsHead`` reads), ``'raw'`` (N, T + h*w, D) or
            ``'featmap'`` (N, D, h, w), the patch tokens. Default 'extra_tokens'.
        drop_rate (float): dropout after the position embedding and in the layers. Default 0.
        drop_path_rate (float): stochastic depth, linear in depth from 0. Default 0 (the
            authors' effective value: their ``--drop-path`` 0.1 is never passed to the model).
        qkv_bias (bool): Default True.
        norm_cfg (dict): the layers' and final norm. Default LN with eps 1e-6 (DeiT / timm).
        final_norm (bool): LayerNorm ``ln1`` after the last layer. Default True.
        interpolate_mode (str): position-embedding resize mode. Default 'bicubic'.
        layer_cfgs (dict | sequence of dict): overrides for each ``TransformerEncoderLayer``.
        layer_init (str): encoder init when ``init_cfg`` is None: ``'timm'`` (every Linear of
            the layers trunc-normal std 0.02 with zero bias, LayerNorms 1 / 0: timm's ViT init,
            which the authors' model has) or ``'mmpretrain'`` (leave mmpretrain's: its
            ``TransformerEncoderLayer`` draws the FFN xavier-uniform). Default 'timm'.
        checkpoint_tokens (sequence of str, optional): the extra tokens of a checkpoint whose
            position embedding differs in length from this model's, in sequence order. Default
            None: inferred - a StemTokenViT checkpoint (it has ``stems.*`` keys) has this
            model's tokens; a plain ViT / DeiT one (mmpretrain's layout, or timm's after
            :func:`convert_vit_checkpoint`) has its learned ``<name>_token`` parameters,
            ``cls`` then ``dist``. See "Loading plain ViT / DeiT checkpoints" below.
    Position embedding: (1, T + h*w, D), trunc-normal std 0.02, added to every token.

    Loading plain ViT / DeiT checkpoints (``init_cfg=dict(type='Pretrained', ...)``,
    ``load_from`` or ``load_state_dict``): the layers, ``cls_token`` and ``ln1`` have
    mmpretrain's names and load as they are; ``patch_embed.projection`` goes to the one
    ``LinearPatchStem``, if the model has one. mmpretrain's own resize assumes the checkpoint
    has the model's number of extra tokens, which mis-splits e.g. ViT's 1 + 196 into 3 + 194.
    Here the checkpoint's extra tokens are known (``checkpoint_tokens``): each token of this
    model takes the checkpoint's position embedding of the same name (``cls`` -> ``cls``);
    tokens the checkpoint lacks (``conv``, ``inv``) keep this model's initialisation; the grid
    part is resized from the checkpoint's square grid to ``patch_resolution``
    (``interpolate_mode``).
    Returns: a tuple with one tensor per ``out_indices`` entry (see ``out_type``); the final
    LayerNorm module ``ln1`` outputs (N, T + h*w, D), e.g. for a distiller to record.
    """

    def __init__(self,
                 arch: Union[str, dict] = 'deit-tiny',
                 img_size: Union[int, Tuple[int, int]] = 224,
                 in_channels: int = 3,
                 stems: Sequence[dict] = (dict(name='conv', type='ConvPatchStem'), ),
                 tokens: Sequence[Union[dict, str]] = (
                     dict(name='cls', type='learned'),
                     dict(name='dist', type='mean', stem='conv')),
                 out_indices: Union[int, Sequence[int]] = -1,
                 out_type: str = 'extra_tokens',
                 drop_rate: float = 0.,
                 drop_path_rate: float = 0.,
                 qkv_bias: bool = True,
                 norm_cfg: dict = dict(type='LN', eps=1e-6),
                 final_norm: bool = True,
                 interpolate_mode: str = 'bicubic',
                 layer_cfgs: Union[dict, Sequence[dict]] = dict(),
                 layer_init: str = 'timm',
                 checkpoint_tokens: Optional[Sequence[str]] = None,
                 init_cfg=None):
        super().__init__(init_cfg)
        self.arch_settings = self._arch(arch)
        self.embed_dims = self.arch_settings['embed_dims']
        self.num_layers = self.arch_settings['num_layers']
        self.img_size = to_2tuple(img_size)
        if out_type not in OUT_TYPES:
            raise ValueError(f'StemTokenViT out_type must be one of {OUT_TYPES}, got '
                             f'{out_type!r}')
        if layer_init not in LAYER_INITS:
            raise ValueError(f'StemTokenViT layer_init must be one of {LAYER_INITS}, got '
                             f'{layer_init!r}')
        self.out_type, self.layer_init = out_type, layer_init
        self.interpolate_mode = interpolate_mode
        self.checkpoint_tokens = None if checkpoint_tokens is None else tuple(checkpoint_tokens)

        # mmengine's ModuleDict, so init_weights reaches the stems (nn.ModuleDict has none).
        self.stems = ModuleDict()
        for cfg in stems:
            self._add_stem(cfg, in_channels)
        self.patch_resolution = self._stem_resolution(in_channels)
        self.token_specs: List[dict] = []
        for t in tokens:
            self.token_specs.append(self._add_token(t))
        self.token_names = tuple(spec['name'] for spec in self.token_specs)
        self.num_extra_tokens = len(self.token_specs)

        num_patches = self.patch_resolution[0] * self.patch_resolution[1]
        self.pos_embed = nn.Parameter(
            torch.zeros(1, self.num_extra_tokens + num_patches, self.embed_dims))
        self.drop_after_pos = nn.Dropout(p=drop_rate)

        if isinstance(out_indices, int):
            out_indices = [out_indices]
        self.out_indices = []
        for index in out_indices:
            layer = self.num_layers + index if index < 0 else index
            if not 0 <= layer < self.num_layers:
                raise ValueError(f'StemTokenViT out_indices: {index} is not a layer of '
                                 f'{self.num_layers}')
            self.out_indices.append(layer)

        if isinstance(layer_cfgs, dict):
            layer_cfgs = [layer_cfgs] * self.num_layers
        dpr = torch.linspace(0, drop_path_rate, self.num_layers).tolist()
        self.layers = ModuleList()
        for i in range(self.num_layers):
            cfg = dict(embed_dims=self.embed_dims,
                       num_heads=self.arch_settings['num_heads'],
                       feedforward_channels=self.arch_settings['feedforward_channels'],
                       drop_rate=drop_rate, drop_path_rate=dpr[i], qkv_bias=qkv_bias,
                       norm_cfg=norm_cfg)
            cfg.update(layer_cfgs[i])
            self.layers.append(TransformerEncoderLayer(**cfg))
        self.final_norm = final_norm
        if final_norm:
            self.ln1 = build_norm_layer(norm_cfg, self.embed_dims)
        self._register_load_state_dict_pre_hook(self._adapt_checkpoint)

    # ------------------------------------------------------------------ construction
    @staticmethod
    def _arch(arch) -> dict:
        if isinstance(arch, str):
            zoo = VisionTransformer.arch_zoo
            if arch.lower() not in zoo:
                raise ValueError(f'StemTokenViT arch {arch!r} is not one of {sorted(zoo)}')
            return dict(zoo[arch.lower()])
        keys = {'embed_dims', 'num_layers', 'num_heads', 'feedforward_channels'}
        if not isinstance(arch, dict) or not keys <= set(arch):
            raise ValueError(f'StemTokenViT arch must be a name or a dict with keys '
                             f'{sorted(keys)}, got {arch!r}')
        return dict(arch)

    def _add_stem(self, cfg: dict, in_channels: int):
        cfg = copy.deepcopy(dict(cfg))
        name = cfg.pop('name', None)
        if not isinstance(name, str) or not name.isidentifier() or name in self.stems:
            raise ValueError(f'StemTokenViT stems: each stem needs a unique identifier '
                             f'"name", got {name!r} (stems so far: {list(self.stems)})')
        cfg.setdefault('embed_dims', self.embed_dims)
        cfg.setdefault('in_channels', in_channels)
        self.stems[name] = MODELS.build(cfg)

    @torch.no_grad()
    def _stem_resolution(self, in_channels: int) -> Tuple[int, int]:
        """Run every stem once on a zero image of ``img_size`` (eval mode, so BN statistics
        are untouched) to find its token grid; all stems must agree and give D channels."""
        if not self.stems:
            raise ValueError('StemTokenViT needs at least one stem in "stems"')
        sizes = {}
        for name, stem in self.stems.items():
            was_training = stem.training
            stem.eval()
            out = stem(torch.zeros(1, in_channels, *self.img_size))
            stem.train(was_training)
            if out.dim() != 4 or out.shape[1] != self.embed_dims:
                raise ValueError(f'StemTokenViT stem {name!r} ({type(stem).__name__}) must '
                                 f'return (N, {self.embed_dims}, h, w); it gave '
                                 f'{tuple(out.shape)} for a {self.img_size} image')
            sizes[name] = tuple(out.shape[-2:])
        if len(set(sizes.values())) != 1:
            raise ValueError(f'StemTokenViT stems give different token grids {sizes} for '
                             f'img_size {self.img_size}; their outputs are summed, so the '
                             'grids must match')
        return next(iter(sizes.values()))

    def _add_token(self, cfg) -> dict:
        spec = dict(name=cfg, type='learned') if isinstance(cfg, str) else dict(cfg)
        name, kind = spec.pop('name', None), spec.pop('type', 'learned')
        taken = [s['name'] for s in self.token_specs]
        if not isinstance(name, str) or not name.isidentifier() or name in taken:
            raise ValueError(f'StemTokenViT tokens: each token needs a unique identifier '
                             f'"name", got {name!r}')
        if kind not in TOKEN_TYPES:
            raise ValueError(f'StemTokenViT token {name!r}: type must be one of '
                             f'{TOKEN_TYPES}, got {kind!r}')
        out = dict(name=name, type=kind)
        if kind == 'learned':
            attr = f'{name}_token'
            if hasattr(self, attr):
                raise ValueError(f'StemTokenViT token {name!r}: attribute {attr!r} exists')
            setattr(self, attr, nn.Parameter(torch.zeros(1, 1, self.embed_dims)))
            out.update(attr=attr, init_std=float(spec.pop('init_std', 0.02)))
        else:
            stem = spec.pop('stem', None)
            if stem is not None and stem not in self.stems:
                raise ValueError(f'StemTokenViT token {name!r}: stem {stem!r} is not one of '
                                 f'{list(self.stems)} (None: the summed patch tokens)')
            out.update(stem=stem)
        if spec:
            raise ValueError(f'StemTokenViT token {name!r} ({kind}): unknown keys '
                             f'{sorted(spec)}')
        return out

    def init_weights(self):
        if isinstance(self.init_cfg, dict) and self.init_cfg.get('type') == 'Pretrained':
            # Before the load: what the checkpoint lacks (e.g. the conv / inv tokens' position
            # embeddings) keeps this initialisation.
            self._init_tokens()
            super().init_weights()
            return
        super().init_weights()
        self._init_tokens()
        if self.init_cfg is None and self.layer_init == 'timm':
            # After the layers' own init_weights (xavier FFN), so this one wins.
            for m in self.layers.modules():
                if isinstance(m, nn.Linear):
                    trunc_normal_(m.weight, std=0.02)
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)
                elif isinstance(m, nn.LayerNorm):
                    nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)

    def _init_tokens(self):
        trunc_normal_(self.pos_embed, std=0.02)
        for spec in self.token_specs:
            if spec['type'] == 'learned':
                trunc_normal_(getattr(self, spec['attr']), std=spec['init_std'])

    # ------------------------------------------------------------------ checkpoints
    def _adapt_checkpoint(self, state_dict, prefix, *args, **kwargs):
        """``load_state_dict`` pre-hook: a plain ViT / DeiT checkpoint (see the class
        docstring) into this model's patch stem and position-embedding layout, in place."""
        src = prefix + 'patch_embed.projection.'
        linear = [n for n, m in self.stems.items() if isinstance(m, LinearPatchStem)]
        if len(linear) == 1:
            for key in [k for k in state_dict if k.startswith(src)]:
                state_dict[f'{prefix}stems.{linear[0]}.proj.{key[len(src):]}'] = \
                    state_dict.pop(key)
        name = prefix + 'pos_embed'
        if name not in state_dict or state_dict[name].shape == self.pos_embed.shape:
            return
        ckpt = state_dict[name]
        if ckpt.dim() != 3 or ckpt.shape[-1] != self.embed_dims:
            return  # load_state_dict reports the size mismatch itself
        tokens = self._checkpoint_tokens(state_dict, prefix)
        num_grid = ckpt.shape[1] - len(tokens)
        side = math.isqrt(max(num_grid, 0))
        if num_grid <= 0 or side * side != num_grid:
            raise ValueError(
                f'StemTokenViT: the checkpoint\'s {name} has {ckpt.shape[1]} positions; with '
                f'its extra tokens {list(tokens)} that leaves {num_grid}, not a square grid. '
                'Give the checkpoint\'s tokens in order as `checkpoint_tokens`.')
        grid = resize_pos_embed(ckpt[:, len(tokens):], (side, side), self.patch_resolution,
                                mode=self.interpolate_mode, num_extra_tokens=0)
        ours = self.pos_embed.detach()
        extra = [ckpt[:, tokens.index(t)] if t in tokens else ours[:, i].to(ckpt)
                 for i, t in enumerate(self.token_names)]
        state_dict[name] = torch.cat([torch.stack(extra, dim=1), grid], dim=1)
        print_log(f'StemTokenViT: position embedding of a checkpoint with tokens '
                  f'{list(tokens)} and a {side}x{side} grid -> tokens {list(self.token_names)}'
                  f' (kept from the checkpoint: {[t for t in self.token_names if t in tokens]})'
                  f' and a {self.patch_resolution[0]}x{self.patch_resolution[1]} grid',
                  logger='current')

    def _checkpoint_tokens(self, state_dict, prefix) -> Tuple[str, ...]:
        if self.checkpoint_tokens is not None:
            return self.checkpoint_tokens
        if any(k.startswith(prefix + 'stems.') for k in state_dict):
            return self.token_names
        found = [k[len(prefix):-len('_token')] for k in state_dict
                 if k.startswith(prefix) and k.endswith('_token')
                 and '.' not in k[len(prefix):]]
        order = {'cls': 0, 'dist': 1}  # ViT: [cls]; DeiT distilled: [cls, dist]
        return tuple(sorted(found, key=lambda t: order.get(t, len(order))))

    # ------------------------------------------------------------------ forward
    def embed(self, x: torch.Tensor) -> Tuple[torch.Tensor, Tuple[int, int]]:
        """Stems, extra tokens and position embedding: (N, C_in, H, W) ->
        ((N, T + h*w, D), (h, w)), the encoder's input (before dropout)."""
        maps = {name: stem(x) for name, stem in self.stems.items()}  # (N, D, h, w) each
        grids = {name: tuple(m.shape[-2:]) for name, m in maps.items()}
        hw = next(iter(grids.values()))
        if len(set(grids.values())) != 1:
            raise ValueError(f'StemTokenViT stems give different token grids {grids} for an '
                             f'input of {tuple(x.shape[-2:])}')
        stem_tokens = {name: m.flatten(2).transpose(1, 2) for name, m in maps.items()}
        patches = None
        for t in stem_tokens.values():
            patches = t if patches is None else patches + t
        extra: List[torch.Tensor] = []
        for spec in self.token_specs:
            if spec['type'] == 'learned':
                extra.append(getattr(self, spec['attr']).expand(x.shape[0], -1, -1))
            else:
                src = patches if spec['stem'] is None else stem_tokens[spec['stem']]
                extra.append(src.mean(dim=1, keepdim=True))
        seq = torch.cat(extra + [patches], dim=1)
        seq = seq + resize_pos_embed(self.pos_embed, self.patch_resolution, hw,
                                     mode=self.interpolate_mode,
                                     num_extra_tokens=self.num_extra_tokens)
        return seq, hw

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """(N, C_in, H, W) -> tuple of one output per ``out_indices`` entry: (N, T, D) for
        'extra_tokens', (N, T + h*w, D) for 'raw', (N, D, h, w) for 'featmap'."""
        x, hw = self.embed(x)
        x = self.drop_after_pos(x)
        outs = []
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i == self.num_layers - 1 and self.final_norm:
                x = self.ln1(x)
            if i in self.out_indices:
                outs.append(self._format_output(x, hw))
        return tuple(outs)

    def _format_output(self, x: torch.Tensor, hw) -> torch.Tensor:
        if self.out_type == 'extra_tokens':
            return x[:, :self.num_extra_tokens]
        if self.out_type == 'raw':
            return x
        patches = x[:, self.num_extra_tokens:]
        return patches.transpose(1, 2).reshape(x.shape[0], -1, *hw)

    def extra_repr(self) -> str:
        return (f'tokens={list(self.token_names)} + patches, stems={list(self.stems)}, '
                f'grid={self.patch_resolution}')


#: timm's ViT / DeiT block names -> mmpretrain's TransformerEncoderLayer names.
_TIMM_LAYER_NAMES = (('norm1.', 'ln1.'), ('norm2.', 'ln2.'), ('mlp.fc1.', 'ffn.layers.0.0.'),
                     ('mlp.fc2.', 'ffn.layers.1.'), ('attn.', 'attn.'))
#: Top-level names of the timm / DeiT / Co-advise models -> an ImageClassifier with this
#: backbone and a MultiTokenClsHead. Co-advise's CivT: conv_embed / inv_embed, head_conv /
#: head_inv; mmpretrain's own heads: head.layers.head(_dist).
_TOP_LEVEL_NAMES = (
    ('cls_token', 'backbone.cls_token'), ('dist_token', 'backbone.dist_token'),
    ('pos_embed', 'backbone.pos_embed'), ('patch_embed.proj.', 'backbone.patch_embed.projection.'),
    ('conv_embed.', 'backbone.stems.conv.'), ('inv_embed.', 'backbone.stems.inv.'),
    ('norm.', 'backbone.ln1.'), ('head_dist.', 'head.heads.dist.'),
    ('head_conv.', 'head.heads.conv.'), ('head_inv.', 'head.heads.inv.'),
    ('head.layers.head_dist.', 'head.heads.dist.'), ('head.layers.head.', 'head.heads.cls.'),
    ('head.heads.', 'head.heads.'), ('head.', 'head.heads.cls.'), ('backbone.', 'backbone.'))


def convert_vit_checkpoint(state_dict: dict) -> Dict[str, torch.Tensor]:
    """A ViT / DeiT / CivT checkpoint as an ``ImageClassifier`` with ``StemTokenViT`` and
    ``MultiTokenClsHead`` loads it (heads named by their token: ``head`` -> ``cls``,
    ``head_dist`` -> ``dist``, ``head_conv`` -> ``conv``, ``head_inv`` -> ``inv``).

    Accepted: timm's layout as DeiT releases it (``{'model': {...}}``: ``blocks.i.norm1``,
    ``mlp.fc1``, ``norm``, ``head``), Co-advise's CivT (the same plus ``conv_embed``,
    ``inv_embed``, ``head_conv``, ``head_inv``), and mmpretrain's (``backbone.*``,
    ``head.layers.head*``), under ``state_dict`` / ``model`` and with or without ``module.``.
    Any other key is an error naming it. The position embedding is left as it is: the
    backbone adapts it when it loads (see :class:`StemTokenViT`)."""
    for wrapper in ('state_dict', 'model'):
        if wrapper in state_dict and isinstance(state_dict[wrapper], dict):
            state_dict = state_dict[wrapper]
            break
    out = {}
    for key, value in state_dict.items():
        k = key[len('module.'):] if key.startswith('module.') else key
        if k.startswith('blocks.'):
            index, rest = k[len('blocks.'):].split('.', 1)
            for old, new in _TIMM_LAYER_NAMES:
                if rest.startswith(old):
                    out[f'backbone.layers.{index}.{new}{rest[len(old):]}'] = value
                    break
            else:
                raise KeyError(f'convert_vit_checkpoint: unknown block key {key!r}')
            continue
        for old, new in _TOP_LEVEL_NAMES:
            if k == old or (old.endswith('.') and k.startswith(old)):
                out[new + k[len(old):]] = value
                break
        else:
            raise KeyError(f'convert_vit_checkpoint: unexpected key {key!r} (known prefixes: '
                           f'{[old for old, _ in _TOP_LEVEL_NAMES]} and blocks.*)')
    return out


__all__ = ['ConvPatchStem', 'InvolutionPatchStem', 'LinearPatchStem', 'StemTokenViT',
           'convert_vit_checkpoint']
