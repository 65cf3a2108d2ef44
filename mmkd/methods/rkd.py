"""RKD: relational knowledge distillation (Park, Kim, Lu, Cho, CVPR 2019).

The student does not copy the teacher's embedding; it copies the *relations* between the
embeddings of a batch, so the two may have different widths and no connector is needed::

    embeddings  s (N, Ds), t (N, Dt)          (N, C, H, W) maps are average-pooled to (N, C)
    distance:   psi_D(i, j) = ||e_i - e_j|| / mu,   mu = mean of the N (N - 1) off-diagonal
                distances of the batch (each model normalised by its own mu; diagonal 0)
                loss_D = mean over the N x N pairs of huber(psi_D^S - psi_D^T)
    angle:      psi_A(i, j, k) = <(e_j - e_i) / ||e_j - e_i||, (e_k - e_i) / ||e_k - e_i||>
                (the cosine of the angle at e_i; a zero difference vector gives 0)
                loss_A = mean over the N x N x N triplets of huber(psi_A^S - psi_A^T)
    loss = distance_weight * loss_D + angle_weight * loss_A

``huber`` is the smooth-L1 loss with threshold 1 (``F.smooth_l1_loss``'s default). The teacher
side carries no gradient. Both terms are means over all index tuples, the degenerate ones
(i = j, or j = i or k = i) included, exactly as the authors' code averages them.

Defaults: distance weight 25 and angle weight 50, mdistiller's CIFAR-100 values
(``CFG.RKD.DISTANCE_WEIGHT`` / ``ANGLE_WEIGHT``) and RepDistiller's (``RKDLoss(w_d=25,
w_a=50)``), whose CIFAR numbers (CRD paper, Table 1) are the ones users compare with;
pairwise distances from the Gram matrix with the squared distances clamped at ``eps = 1e-12``
before the square root (``CFG.RKD.PDIST``; lenscloth/RKD's ``pdist``). The authors'
metric-learning scripts (lenscloth/RKD ``examples/``) use weights 1 and 2 instead.

mdistiller feeds RKD the last stage's globally average-pooled feature (``pooled_feat``); here
a recorded map (N, C, H, W) is average-pooled the same way (the 'neck' output of an mmpretrain
classifier already is that vector), and a (N, D) vector is used as it is. Other shapes
(N, ...) are flattened, as the authors' ``view(N, -1)`` would.

Memory: the angle term forms an (N, N, D) tensor of difference vectors and an (N, N, N) tensor
of cosines (batch 64, D 256: 1 M + 0.26 M values), so keep it on pooled features.

A batch of one sample has no relation: both terms are 0 (the authors' code gives NaN). Two
coincident embeddings are ``sqrt(eps)`` apart (finite gradient), as in the authors' code; a
side whose embeddings all coincide therefore has every off-diagonal normalised distance 1.
"""
from typing import Dict

import torch
import torch.nn.functional as F

from ..registry import MODELS
from ..utils.arguments import NonNegativeFloat, PositiveFloat
from .base import LevelwiseMethod


def _embedding(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> global average pool (N, C); (N, D) unchanged; (N, ...) flattened."""
    if x.dim() == 4:
        x = x.mean(dim=(2, 3))
    return x.reshape(x.shape[0], -1)


def pairwise_distances(e: torch.Tensor, squared: bool = False,
                       eps: float = 1e-12) -> torch.Tensor:
    """(N, D) -> (N, N) Euclidean distances (squared ones if ``squared``), the diagonal exactly
    0; the squared distances are clamped at ``eps`` before the square root, so coincident
    points have a finite gradient."""
    sq = e.pow(2).sum(dim=1)
    d2 = (sq[:, None] + sq[None, :] - 2.0 * (e @ e.t())).clamp(min=eps)
    d = d2 if squared else d2.sqrt()
    eye = torch.eye(e.shape[0], dtype=torch.bool, device=e.device)
    return d.masked_fill(eye, 0.0)


def _normalised_distances(e: torch.Tensor, squared: bool, eps: float) -> torch.Tensor:
    """Distances divided by the mean of the off-diagonal ones (all >= sqrt(eps) > 0, N >= 2)."""
    d = pairwise_distances(e, squared, eps)
    return d / d[d > 0].mean()


def _angles(e: torch.Tensor) -> torch.Tensor:
    """(N, D) -> (N, N, N): [i, j, k] = cosine between e_j - e_i and e_k - e_i."""
    diff = F.normalize(e[None, :, :] - e[:, None, :], p=2, dim=2)  # [i, j] = e_j - e_i
    return diff @ diff.transpose(1, 2)


def rkd_terms(student: torch.Tensor, teacher: torch.Tensor, squared: bool = False,
              eps: float = 1e-12):
    """RKD's distance and angle terms, unweighted, for (N, Ds) and (N, Dt) embeddings
    (module docstring). The teacher is used as given: detach it for no teacher gradient."""
    if student.shape[0] < 2:
        zero = student.sum() * 0.0
        return zero, zero
    loss_d = F.smooth_l1_loss(_normalised_distances(student, squared, eps),
                              _normalised_distances(teacher, squared, eps))
    loss_a = F.smooth_l1_loss(_angles(student), _angles(teacher))
    return loss_d, loss_a


@MODELS.register_module()
class RKD(LevelwiseMethod):
    """Relational KD: distance-wise and angle-wise relations of a batch's embeddings (module
    docstring).

    Args:
        distance_weight (float): weight of the distance term. Default 25.0 (mdistiller's and
            RepDistiller's CIFAR-100 value; 1 in the authors' metric-learning scripts,
            lenscloth/RKD ``examples/``).
        angle_weight (float): weight of the angle term. Default 50.0 (the same sources; 2 in
            the metric-learning scripts).
        squared (bool): compare squared distances instead of distances (mdistiller's
            ``PDIST.SQUARED`` option). Default False, the paper's and every authors' run.
        eps (float): floor of the squared pairwise distances before the square root.
            Default 1e-12 (the authors').

    Block: embeddings on both sides, the same batch, widths free: pooled features (N, D),
    e.g. ``'neck'`` of an mmpretrain classifier, or maps (N, C, H, W), globally average-pooled
    first (as mdistiller feeds its ``pooled_feat``); several levels give one term each.
    Returns ``loss_rkd_distance`` and ``loss_rkd_angle`` (weights applied; their sum is the
    authors' RKD loss).

    References:
        Paper: Park, Kim, Lu, Cho, "Relational Knowledge Distillation", CVPR 2019
            (arXiv 1904.05068).
        Code: the authors', https://github.com/lenscloth/RKD (``metric/loss.py``:
            ``RkdDistance``, ``RKdAngle``; ``metric/utils.py``: ``pdist``), and
            https://github.com/megvii-research/mdistiller (``distillers/RKD.py``).
    """

    def __init__(self, distance_weight: NonNegativeFloat = 25.0,
                 angle_weight: NonNegativeFloat = 50.0, squared: bool = False,
                 eps: PositiveFloat = 1e-12, **kwargs):
        super().__init__(**kwargs)
        self.distance_weight, self.angle_weight = float(distance_weight), float(angle_weight)
        self.squared, self.eps = squared, float(eps)

    def build_level(self, student, teacher):
        for side, v in (('student', student), ('teacher', teacher)):
            if v.dim() < 2:
                raise ValueError(f'RKD needs embeddings (N, D) or maps (N, C, H, W); the '
                                 f'{side} gives {tuple(v.shape)}.')
        if student.shape[0] != teacher.shape[0]:
            raise ValueError(f'RKD relates the samples of one batch: student batch '
                             f'{student.shape[0]}, teacher batch {teacher.shape[0]}.')
        return None

    def level_loss(self, student, teacher, connector, data_samples=None
                   ) -> Dict[str, torch.Tensor]:
        dtype = torch.promote_types(student.dtype, torch.float32)  # float32 under AMP
        s = _embedding(student).to(dtype)
        t = _embedding(teacher).detach().to(dtype)
        loss_d, loss_a = rkd_terms(s, t, self.squared, self.eps)
        return dict(loss_rkd_distance=self.distance_weight * loss_d,
                    loss_rkd_angle=self.angle_weight * loss_a)
