"""KDSVD: knowledge distillation by singular value decomposition (Lee, Kim, Song, "Self-supervised
Knowledge Distillation Using Singular Value Decomposition", ECCV 2018).

The knowledge is the relation between consecutive stages: each stage's map is compressed to
its leading right singular vectors (channel-space directions), and the student copies how
those directions of one stage relate to the previous stage's, through an RBF::

    levels l = 1..L, maps f_l (N, C_l, H_l, W_l) on both sides (C_l equal on both sides,
        or a 1x1 connector on the student, below); spatial sizes free
    X_l = f_l viewed (N, H_l W_l, C_l);  X_l = U S V^T   (torch.linalg.svd, reduced)
    teacher:  V_t (N, C_l, k) = the first k columns of V, each L2-normalised;
              s_t (N, k) = the first k singular values, L2-normalised over k
    student:  V_s = the first k + 3 columns, each L2-normalised; aligned to the teacher:
              for each teacher vector j, the student vector i of largest |cos(v_s_i, v_t_j)|,
              multiplied by sign(cos)  -> (N, C_l, k)   (no gradient through the choice)
    both:     V <- V * s_t (the teacher's normalised singular values on both sides)
    for l >= 2:  R(V)[n, a, b, j] = exp(-(V_l[n, a, j] - V_{l-1}[n, b, j])^2 / 8)
                                                       (N, C_l, C_{l-1}, k)
                 term_l = sum over all entries of (R(V_s) - R(V_t))^2, non-finite entries 0
    L_KDSVD = sum over l >= 2 of term_l / N

The teacher carries no gradient. At least two levels are needed (one level has no relation).

Defaults: ``k`` 1 (RepDistiller ``KDSVD(k=1)``; mdistiller ``CFG.KDSVD.K``), the three stages'
outputs (RepDistiller ``feat[1:-1]``; mdistiller ``feats[1:]``), loss weight 1 and CE weight 1,
no logit KD (mdistiller ``CFG.KDSVD.LOSS.FEAT_WEIGHT``; RepDistiller's script has no KDSVD line
and its ``-b`` has no default, so mdistiller's 1 is the authors' value we follow).

Where the two copies differ: RepDistiller reshapes a map to ``(N, C, H*H)`` and transposes it
to ``(N, HW, C)``, the original TensorFlow code's ``(B, HW, D)`` matrix, so V spans channels;
mdistiller views it as ``(N, C*H, W)``, which makes V span the map's width instead. We follow
RepDistiller (and the paper: singular vectors of the feature map's channels) and use ``H*W``
where RepDistiller writes ``H*H`` (the same for its square maps). mdistiller casts to float32
before the SVD; here it runs in float32 at least (float64 stays float64), autocast off.

Channels: the RBF compares the student's and the teacher's (C_l x C_{l-1}) relations entry by
entry, so the authors need equal channels per stage (true of their CIFAR pairs: ResNet-32x4 /
8x4, WRN-40-2 / 16-2, ResNet-56 / 20). With ``connector='auto'`` (our addition) a level whose
channels differ gets a bias-free 1x1 convolution C_s -> C_t on the student's map, trained with
the student; levels with equal channels get none (the authors' formulation exactly).

Gradient: the authors' loss backpropagates through ``torch.svd``, whose gradient has terms
``1 / (s_i^2 - s_j^2)`` over every pair of singular values (and ``1 / s_i`` for a reduced
SVD of a non-square matrix): it is not finite when two singular values coincide (e.g. two
dead, all-zero channels) and numerically unstable when they nearly do. The authors replace
non-finite *values* (``removenan`` on U, S, V and on the loss entries) but not gradients, so a
non-finite SVD gradient reaches the student's weights. Here the gradient that reaches each
sample's map through the SVD is kept when finite and set to 0 for a sample where it is not
(that sample then teaches nothing through that level in that step); otherwise it equals the
authors' gradient. A finite but huge gradient (singular values that nearly coincide, e.g. a
rank-1 map, whose vectors 2..k+3 are then ill-defined: ~1e45 in float64) is passed on, as the
authors' is; the optimizer wrapper's ``clip_grad`` is the remedy if it occurs.
"""
from typing import Dict, List, Literal, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..registry import MODELS
from ..utils.arguments import InitCfg, LossName, PositiveInt
from .base import BaseDistillMethod, Features, flatten_levels


class _FiniteGradPerSample(torch.autograd.Function):
    """Identity; in backward, a sample (first dim) whose gradient has a non-finite entry gets
    a zero gradient instead."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        ok = torch.isfinite(grad).flatten(1).all(dim=1)
        return torch.where(ok.view(-1, *([1] * (grad.dim() - 1))), grad,
                           torch.zeros_like(grad))


def _finite(x: torch.Tensor) -> torch.Tensor:
    return torch.where(torch.isfinite(x), x, torch.zeros_like(x))


def leading_svd(feat: torch.Tensor, n: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """(N, C, H, W) -> the first ``n`` right singular vectors of the (N, HW, C) matrix, each
    L2-normalised, (N, C, n), and the first ``n`` singular values, L2-normalised, (N, n);
    non-finite values replaced by 0 (the authors' ``svd`` with ``removenan``)."""
    x = feat.flatten(2).transpose(1, 2)
    _, s, vh = torch.linalg.svd(x, full_matrices=False)
    s, v = _finite(s), _finite(vh.transpose(1, 2))
    return F.normalize(v[:, :, :n], dim=1), F.normalize(s[:, :n], dim=1)


def align_to(v_s: torch.Tensor, v_t: torch.Tensor) -> torch.Tensor:
    """(N, C, m), (N, C, k) -> (N, C, k): for each teacher vector, the student vector with the
    largest |cosine| times the cosine's sign (the authors' ``align_rsv``; ties sum)."""
    cos = v_s.transpose(1, 2) @ v_t  # (N, m, k)
    best = cos.abs().amax(dim=1, keepdim=True)
    mask = torch.where(cos.abs() == best, torch.sign(cos), torch.zeros_like(cos))
    return v_s @ mask.detach()


def _rbf(v: torch.Tensor, v_prev: torch.Tensor) -> torch.Tensor:
    """(N, C_l, k), (N, C_{l-1}, k) -> (N, C_l, C_{l-1}, k): exp(-(difference)^2 / 8)."""
    return torch.exp(-(v.unsqueeze(2) - v_prev.unsqueeze(1)).pow(2) / 8)


@MODELS.register_module()
class KDSVD(BaseDistillMethod):
    """SVD-based KD: the RBF relations between consecutive stages' leading right singular
    vectors, matched between student and teacher (module docstring).

    Args:
        k (int): number of teacher singular vectors per stage (the student offers k + 3 to
            align to them). Default 1 (RepDistiller ``KDSVD(k=1)``, mdistiller
            ``CFG.KDSVD.K``).
        connector (str): 'auto' (default): a bias-free 1x1 convolution C_s -> C_t on the
            student's map of each level whose channels differ from the teacher's (our
            addition; the authors need equal channels); 'none': no connector, unequal
            channels are an error at build.
        loss_name (str): key of the returned loss. Default 'loss_kdsvd'.
        init_cfg (dict | list[dict], optional): see :class:`BaseDistillMethod`.

    Block: ``student=['backbone.layer1', 'backbone.layer2', 'backbone.layer3']`` and the same
    teacher points (the three stages' outputs of CIFAR ResNets and WRNs, the authors'
    CIFAR-100 setting); at least two levels of maps (N, C, H, W), the same count on both
    sides. Returns ``loss_kdsvd``.

    References:
        Paper: Lee, Kim, Song, "Self-supervised Knowledge Distillation Using Singular Value
            Decomposition", ECCV 2018 (arXiv 1807.06819).
        Code: https://github.com/HobbitLong/RepDistiller (``distiller_zoo/KDSVD.py``,
            b84f547) and https://github.com/megvii-research/mdistiller
            (``mdistiller/distillers/KDSVD.py``, a08d46f), both ported from the authors'
            TensorFlow code, https://github.com/sseung0703/SSKD_SVD.
    """

    def __init__(self, k: PositiveInt = 1, connector: Literal['auto', 'none'] = 'auto',
                 loss_name: LossName = 'loss_kdsvd', init_cfg: InitCfg = None):
        super().__init__(init_cfg=init_cfg)
        self.k, self.connector, self.loss_name = int(k), connector, loss_name
        self.connectors = nn.ModuleList()

    def _pairs(self, student: Features, teacher: Features) -> List[tuple]:
        s_levels, t_levels = flatten_levels(student), flatten_levels(teacher)
        if len(s_levels) != len(t_levels):
            raise ValueError(f'KDSVD: student gives {len(s_levels)} levels but teacher gives '
                             f'{len(t_levels)}; record the same stages on both sides.')
        return list(zip(s_levels, t_levels))

    def build(self, student: Features, teacher: Features) -> None:
        pairs = self._pairs(student, teacher)
        if len(pairs) < 2:
            raise ValueError('KDSVD relates consecutive stages: record at least two levels '
                             "(e.g. ['backbone.layer1', 'backbone.layer2', 'backbone.layer3']).")
        for i, (s, t) in enumerate(pairs):
            if s.dim() != 4 or t.dim() != 4 or s.shape[0] != t.shape[0]:
                raise ValueError(f'KDSVD needs feature maps (N, C, H, W) of one batch; level '
                                 f'{i}: student {tuple(s.shape)}, teacher {tuple(t.shape)}.')
            if s.shape[1] == t.shape[1]:
                self.connectors.append(nn.Identity())
            elif self.connector == 'auto':
                self.connectors.append(nn.Conv2d(s.shape[1], t.shape[1], 1, bias=False))
            else:
                raise ValueError(f"KDSVD with connector='none' needs equal channels per level; "
                                 f'level {i}: student {s.shape[1]}, teacher {t.shape[1]} (use '
                                 "connector='auto').")
        super().build(student, teacher)

    def forward(self, student: Features, teacher: Features,
                data_samples=None) -> Dict[str, torch.Tensor]:
        pairs = self._pairs(student, teacher)
        dtype = torch.promote_types(pairs[0][0].dtype, torch.float32)
        total = None
        prev = None
        with torch.autocast(device_type=pairs[0][0].device.type, enabled=False):
            for conn, (f_s, f_t) in zip(self.connectors, pairs):
                if not isinstance(conn, nn.Identity):
                    f_s = conn(f_s.to(conn.weight.dtype))
                if not torch.isfinite(f_s).all():
                    # The SVD would raise; a non-finite loss lets the distiller's non-finite
                    # check stop (or skip) naming the block, the term and the iteration.
                    return {self.loss_name: f_s.sum() * float('nan')}
                with torch.no_grad():
                    v_t, s_t = leading_svd(f_t.detach().to(dtype), self.k)
                v_s, _ = leading_svd(_FiniteGradPerSample.apply(f_s.to(dtype)), self.k + 3)
                v_s = align_to(v_s, v_t)
                s_t = s_t.unsqueeze(1)
                v_t, v_s = v_t * s_t, v_s * s_t
                if prev is not None:
                    diff = (_rbf(v_s, prev[0]) - _rbf(v_t, prev[1])).pow(2)
                    term = _finite(diff).sum()
                    total = term if total is None else total + term
                prev = (v_s, v_t)
        return {self.loss_name: total / pairs[0][0].shape[0]}
