"""FT: factor transfer (Kim, Park, Kwak, NeurIPS 2018, "Paraphrasing Complex Network").

A *paraphraser* (a convolutional auto-encoder) learns to compress the teacher's feature map
into "factors"; a *translator* on the student produces factors of the same shape; the student
matches the normalised teacher factors::

    teacher map t (N, Ct, Ht, Wt) -> paraphraser encoder -> factor_t (N, k Ct, Ht, Wt)
                                  -> decoder -> rec (N, Ct, Ht, Wt)
    student map s (N, Cs, Hs, Ws) -> translator -> factor_s (N, k Ct, Hs, Ws)
    stage 1 (paraphraser):  loss_ft_reconstruction = w_rec * mean((rec - t)^2)   (only the
                            paraphraser receives gradients; the teacher is frozen)
    stage 2 (transfer):     the larger of the two factor maps is average-pooled to the
                            smaller one's size, then
                            phi(f) = normalise_L2( mean over channels of f^p1 ) (N, H W)
                            loss_ft_factor = w_factor * mean |phi(factor_s) - phi(factor_t)|^p2
                            (p2 = 1: absolute values), with the paraphraser frozen

The two weights are the method's (as RKD's distance and angle weights), so that the block's
``loss_weight`` (1) does not scale the paraphraser's reconstruction: w_rec = 1 (RepDistiller's
``nn.MSELoss``), w_factor = 200 (RepDistiller's CIFAR runs, ``-b 200``).

Encoder and translator: three 3x3 convs (Ct -> Ct -> k Ct -> k Ct for the paraphraser, Cs -> Cs
-> k Ct -> k Ct for the translator), each followed by (BatchNorm) and LeakyReLU(0.1); the
decoder mirrors the encoder with 3x3 transposed convs. The paraphraser has no BatchNorm, the
translator has (RepDistiller's ``models/util.py`` ``Paraphraser(use_bn=False)``,
``Translator(use_bn=True)``; MMRazor's ``factor_transfer_connectors.py`` the same). Module
layout and ``state_dict`` keys are those of RepDistiller (``encoder.0.weight``, ...).

The factor phi: RepDistiller (whose runs give the CRD paper's Table 1 numbers) takes the
channel mean of ``f ** p1`` (p1 = 2, an attention map) before the L2 normalisation; the paper
and MMRazor (``FTLoss``) normalise the whole flattened factor, ``F.normalize(f.view(N, -1))``,
with p2 = 1 (MMRazor's ``nn.L1Loss``, a mean). ``factor='attention'`` (default) follows
RepDistiller, ``factor='flatten'`` the paper and MMRazor. The distance is a mean over the
elements in both codes (the paper writes the p-norm of the difference: the same up to a
constant factor for p = 1, which the weight absorbs). RepDistiller pools the larger map to a
square of the smaller one's height; here to the smaller one's height and width (the same for
the square maps of every network it runs); MMRazor does not pool (equal sizes only).

Stages, in one run: the method reads MMEngine's iteration (epoch, with ``by_epoch=True``)
counter as the loss-weight schedules do (:mod:`mmkd.distillers.loss_weights`; ``t`` is 1-based):
for ``t <= paraphraser_stage`` only the reconstruction loss is on (the translator and the
student receive no FT gradient), after it only the factor loss (the paraphraser's encoder runs
under ``no_grad`` in eval mode: its parameters get no gradient and the optimiser leaves them as
they are). The logged diagnostic ``ft_stage`` (1 or 2) shows the boundary. RepDistiller
(``helper/pretrain.py`` ``init``) trains the paraphraser for ``init_epochs = 30`` epochs with
its own SGD (lr 0.01 for the CIFAR networks) *before* the student's 240 epochs, in which the
student's loss is ``CE + 200 * loss_factor`` (``-a 0 -b 200``); MMRazor runs the two stages
as two runs (a "pretrain" config, then a "train" config loading its checkpoint). What differs
here: one optimiser and LR schedule for both stages, and the student trains with its task
loss during stage 1 (the distiller has no schedule for the student's own loss weight), so to
give the student the authors' 240 epochs of transfer, make the run 30 epochs longer.

Under DDP the translator (stage 1) and the paraphraser (stage 2) take no part in the loss, so
the DDP wrapper needs ``find_unused_parameters=True`` (MMRazor's FT configs set it too).
"""
from typing import Annotated, Dict, Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..distillers.loss_weights import current_step
from ..registry import MODELS
from ..utils.arguments import Interval, NonNegativeFloat, NonNegativeInt, PositiveFloat
from .base import BaseDistillMethod, pool_to_smaller

Rate = Annotated[float, Interval(gt=0, le=1)]


def _block(c_in: int, c_out: int, bn: bool, transposed: bool = False):
    conv = (nn.ConvTranspose2d if transposed else nn.Conv2d)(c_in, c_out, 3, 1, 1)
    return [conv, nn.BatchNorm2d(c_out) if bn else nn.Identity(), nn.LeakyReLU(0.1)]


class Paraphraser(nn.Module):
    """The teacher-side auto-encoder: (N, C, H, W) -> factor (N, int(C k), H, W) -> (N, C, H, W)
    (module docstring)."""

    def __init__(self, channels: int, rate: float = 0.5, bn: bool = False):
        super().__init__()
        out = int(channels * rate)
        self.encoder = nn.Sequential(*_block(channels, channels, bn), *_block(channels, out, bn),
                                     *_block(out, out, bn))
        self.decoder = nn.Sequential(*_block(out, out, bn, True), *_block(out, channels, bn, True),
                                     *_block(channels, channels, bn, True))

    def forward(self, x):
        factor = self.encoder(x)
        return factor, self.decoder(factor)


class Translator(nn.Module):
    """The student-side encoder: (N, Cs, H, W) -> (N, factor_channels, H, W)."""

    def __init__(self, channels: int, factor_channels: int, bn: bool = True):
        super().__init__()
        self.encoder = nn.Sequential(*_block(channels, channels, bn),
                                     *_block(channels, factor_channels, bn),
                                     *_block(factor_channels, factor_channels, bn))

    def forward(self, x):
        return self.encoder(x)


def factor_transfer_loss(f_s: torch.Tensor, f_t: torch.Tensor, p1: float = 2.0, p2: float = 1.0,
                         factor: str = 'attention') -> torch.Tensor:
    """The factor loss of two factor maps (module docstring): the larger is average-pooled to
    the smaller's size; ``factor`` 'attention' (RepDistiller) or 'flatten' (paper, MMRazor)."""
    f_s, f_t = pool_to_smaller(f_s, f_t)

    def phi(f):
        if factor == 'attention':
            f = f.pow(p1).mean(1)
        return F.normalize(f.reshape(f.shape[0], -1))

    diff = phi(f_s) - phi(f_t)
    return diff.abs().mean() if p2 == 1 else diff.pow(p2).mean()


@MODELS.register_module()
class FT(BaseDistillMethod):
    """Factor transfer with its paraphraser stage (module docstring).

    Args:
        paraphraser_stage (int): the number of iterations (epochs, with ``by_epoch=True``) at
            the start of the run that train the paraphraser (reconstruction loss only); the
            factor loss is on after them. Default 30 with ``by_epoch=True`` (RepDistiller's
            ``init_epochs``). 0: no paraphraser stage (a paraphraser loaded by ``init_cfg``).
        by_epoch (bool): count ``paraphraser_stage`` in epochs. Default True.
        rate (float): the paraphraser's compression rate k: factors have ``int(k * Ct)``
            channels. Default 0.5 (the paper's CIFAR setting; RepDistiller's and MMRazor's).
        factor_weight (float): w_factor, the weight of the factor loss. Default 200.0
            (RepDistiller's ``scripts/run_cifar_distill.sh``: ``-b 200``; MMRazor's config 1.0).
        reconstruction_weight (float): w_rec, the weight of the paraphraser's reconstruction
            loss. Default 1.0 (RepDistiller's ``nn.MSELoss()``).
        p1 (float): the power of the factor before the channel mean (``factor='attention'``).
            Default 2.0 (RepDistiller's ``FactorTransfer(p1=2)``).
        p2 (float): the distance: 1 = mean absolute difference (the paper's L1), else the mean
            of ``diff ** p2``. Default 1.0 (paper, RepDistiller, MMRazor).
        factor (str): 'attention' (RepDistiller: L2-normalised channel mean of ``f ** p1``) or
            'flatten' (the paper, MMRazor: the L2-normalised flattened factor). Default
            'attention', the code behind the CRD paper's Table 1 numbers.
        paraphraser_bn (bool): BatchNorm after each paraphraser conv. Default False
            (RepDistiller, MMRazor).
        translator_bn (bool): BatchNorm after each translator conv. Default True (the same).

    Block: one map (N, C, H, W) on each side, the same batch (RepDistiller: the last stage's
    output, ``feat[-2]``, e.g. ``'neck@input'`` of an mmpretrain classifier). Returns
    ``loss_ft_reconstruction`` (stage 1; 0 after), ``loss_ft_factor`` (stage 2; 0 before;
    ``factor_weight`` times the authors' ``loss_kd``) and the diagnostic ``ft_stage``. Keep the
    block's ``loss_weight`` at 1: it multiplies both terms.

    References:
        Paper: Kim, Park, Kwak, "Paraphrasing Complex Network: Network Compression via Factor
            Transfer", NeurIPS 2018 (arXiv 1802.04977).
        Code: https://github.com/HobbitLong/RepDistiller (``distiller_zoo/FT.py``,
            ``models/util.py`` ``Paraphraser``/``Translator``, ``helper/pretrain.py``; commit
            b84f547), https://github.com/open-mmlab/mmrazor
            (``mmrazor/models/losses/factor_transfer_loss.py``,
            ``mmrazor/models/architectures/connectors/factor_transfer_connectors.py``; commit
            0fe347f).
    """

    def __init__(self, paraphraser_stage: NonNegativeInt = 30, by_epoch: bool = True,
                 factor_weight: NonNegativeFloat = 200.0,
                 reconstruction_weight: NonNegativeFloat = 1.0, rate: Rate = 0.5,
                 p1: PositiveFloat = 2.0, p2: PositiveFloat = 1.0,
                 factor: Literal['attention', 'flatten'] = 'attention',
                 paraphraser_bn: bool = False, translator_bn: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.paraphraser_stage = int(paraphraser_stage)
        self.by_epoch = by_epoch
        self.factor_weight = float(factor_weight)
        self.reconstruction_weight = float(reconstruction_weight)
        self.rate, self.p1, self.p2 = float(rate), float(p1), float(p2)
        self.factor = factor
        self.paraphraser_bn, self.translator_bn = paraphraser_bn, translator_bn

    def build(self, student, teacher) -> None:
        for side, v in (('student', student), ('teacher', teacher)):
            if not isinstance(v, torch.Tensor) or v.dim() != 4:
                raise ValueError(f'FT needs one feature map (N, C, H, W) per side; the {side} '
                                 f'gives {getattr(v, "shape", type(v).__name__)}.')
        c_t = teacher.shape[1]
        if int(c_t * self.rate) < 1:
            raise ValueError(f'FT: rate {self.rate} of the teacher\'s {c_t} channels leaves no '
                             'factor channel.')
        self.paraphraser = Paraphraser(c_t, self.rate, self.paraphraser_bn)
        self.translator = Translator(student.shape[1], int(c_t * self.rate), self.translator_bn)
        super().build(student, teacher)

    def stage(self) -> int:
        """1 (paraphraser) or 2 (transfer) for the Runner's current iteration/epoch (t = 1
        outside a Runner)."""
        t, _ = current_step(self.by_epoch)
        return 1 if t <= self.paraphraser_stage else 2

    def forward(self, student, teacher, data_samples=None) -> Dict[str, torch.Tensor]:
        dtype = torch.promote_types(student.dtype, torch.float32)
        t = teacher.detach().to(dtype)
        zero = student.new_zeros((), dtype=dtype)
        if self.stage() == 1:
            _, rec = self.paraphraser(t)
            return dict(loss_ft_reconstruction=self.reconstruction_weight * F.mse_loss(rec, t),
                        loss_ft_factor=zero,
                        ft_stage=torch.tensor(1.0))
        was_training = self.paraphraser.training
        self.paraphraser.eval()
        with torch.no_grad():
            factor_t = self.paraphraser.encoder(t)
        self.paraphraser.train(was_training)
        factor_s = self.translator(student.to(dtype))
        loss = factor_transfer_loss(factor_s, factor_t, self.p1, self.p2, self.factor)
        return dict(loss_ft_reconstruction=zero, loss_ft_factor=self.factor_weight * loss,
                    ft_stage=torch.tensor(2.0))
