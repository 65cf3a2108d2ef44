"""PKT: probabilistic knowledge transfer (Passalis & Tefas, ECCV 2018).

The student matches the teacher's *distribution of similarities* within a batch, not its
features, so the two feature sizes may differ and no connector is needed::

    f (N, D) per model                            (N, C, H, W) -> flattened (N, C*H*W), or
                                                  pooled (N, C) with spatial='pool'
    x = f / (||f||_2 + eps)                       each sample's vector, L2-normalised
    K = (x x^T + 1) / 2                (N, N)     cosine similarity mapped to [0, 1]
    P = K / K.sum(dim=1, keepdim=True) (N, N)     row i: the conditional probabilities p(j | i)
    loss = mean over the N*N entries of P_t * log((P_t + eps) / (P_s + eps))

i.e. the KL divergence ``KL(P_t(. | i) || P_s(. | i))`` of each row, summed over the row and
averaged over the N*N entries (= the row KLs summed / N^2): the authors' reduction, which is why
their weight is as large as 30,000. The diagonal (each sample with itself, K = 1) is kept, as in
the authors' code. The teacher's side is detached.

Where this follows and where it differs from the authors' code (``pkt_loss`` in
megvii-research/mdistiller ``mdistiller/distillers/PKT.py``, the same as HobbitLong/RepDistiller
``distiller_zoo/PKT.py``, both "from" passalis/probabilistic_kt):

* Same formula, same eps (1e-7, in the norm and in the log), same reduction; equal to rounding
  in loss and gradient (``tests/test_pkt.py``).
* What is fed to it: both benchmarks give the loss the penultimate feature *after* global
  average pooling (mdistiller ``feature["pooled_feat"]``, RepDistiller ``feat_s[-1]``), (N, C).
  In mmpretrain classifiers that is the ``'neck'`` record point (``GlobalAveragePooling``),
  which our CIFAR and demo configs use. A 4-D map is flattened by default (the paper's
  definition on any representation vector; the authors' loss would reject a 4-D tensor);
  ``spatial='pool'`` averages it over H, W first, i.e. what the authors feed it.
* A sample whose feature is all zeros: the authors' ``sqrt(sum f^2)`` has a NaN gradient there
  (``f[f != f] = 0`` clears NaNs of the forward pass only); ours uses
  ``torch.linalg.vector_norm``, whose gradient at 0 is 0, so the loss and gradient stay finite
  (the sample's vector is 0, its similarities 1/2). Elsewhere the two are the same.

Computed in float32 at least (AMP-safe); several levels (record points) give one term each.
"""
from typing import Annotated, Dict, Literal

import torch

from ..registry import MODELS
from ..utils.arguments import Interval, LossName
from .base import LevelwiseMethod

Eps = Annotated[float, Interval(gt=0, why='eps keeps the normalisation and the log finite')]


def pkt_probabilities(x: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """(N, D) features -> (N, N) row-stochastic matrix of cosine-similarity probabilities."""
    x = x / (torch.linalg.vector_norm(x, dim=1, keepdim=True) + eps)
    k = (x @ x.t() + 1.0) / 2.0
    return k / k.sum(dim=1, keepdim=True)


def pkt_loss(student: torch.Tensor, teacher: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """PKT between (N, Ds) and (N, Dt) features (module docstring); the teacher is not detached
    here."""
    p_s, p_t = pkt_probabilities(student, eps), pkt_probabilities(teacher, eps)
    return (p_t * torch.log((p_t + eps) / (p_s + eps))).mean()


@MODELS.register_module()
class PKT(LevelwiseMethod):
    """Probabilistic knowledge transfer: match the batch's cosine-similarity distributions.

    Data flow (module docstring): student (N, Ds) and teacher (N, Dt) features (or (N, C, H, W)
    maps, flattened or pooled) -> each L2-normalised per sample -> (N, N) similarities in
    [0, 1] -> row-normalised into conditional probabilities P_s, P_t -> ``mean(P_t * log((P_t
    + eps) / (P_s + eps)))``. Feature sizes may differ between the models (no connector); the
    batch sizes must be equal.

    Args:
        eps (float): added to each vector's norm and to both probabilities inside the log.
            Default 1e-7 (the authors' code).
        spatial (str): how a map (N, C, *S) becomes a vector: 'flatten' (default; the paper's
            representation vector, (N, C * prod(S))) or 'pool' (mean over the spatial dims,
            (N, C): what the authors' benchmarks feed the loss, taken after the network's
            average pooling). (N, D) features are used as they are either way.
        loss_name (str): key of the returned loss. Default 'loss_pkt'.

    Block: the pooled penultimate features, ``student='neck', teacher='neck'`` in mmpretrain
    classifiers (the authors' setting), weight 30000 with no logit KD and the student's CE at
    weight 1 (mdistiller ``CFG.PKT``: ``FEAT_WEIGHT 30000``, ``CE_WEIGHT 1``; RepDistiller
    ``-a 0 -b 30000``). Several levels give one term each. Returns ``loss_pkt``.

    References:
        Paper: Passalis, Tefas, "Learning Deep Representations with Probabilistic Knowledge
            Transfer", ECCV 2018 (arXiv 1803.10837).
        Code: the authors', https://github.com/passalis/probabilistic_kt; as benchmarked in
            https://github.com/megvii-research/mdistiller (``mdistiller/distillers/PKT.py``)
            and https://github.com/HobbitLong/RepDistiller (``distiller_zoo/PKT.py``).
    """

    def __init__(self, eps: Eps = 1e-7, spatial: Literal['flatten', 'pool'] = 'flatten',
                 loss_name: LossName = 'loss_pkt', **kwargs):
        super().__init__(**kwargs)
        self.eps = float(eps)
        self.spatial = spatial
        self.loss_name = loss_name

    def _vectors(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 2:
            raise ValueError(f'PKT needs features (N, D) or maps (N, C, ...), got shape '
                             f'{tuple(x.shape)}.')
        if x.dim() > 2 and self.spatial == 'pool':
            x = x.flatten(2).mean(dim=2)
        return x.flatten(1)

    def build_level(self, student, teacher):
        self._vectors(student), self._vectors(teacher)  # shape checks
        if student.shape[0] != teacher.shape[0]:
            raise ValueError(f'PKT compares samples of one batch: student gives '
                             f'{student.shape[0]} and teacher {teacher.shape[0]}.')
        return None

    def level_loss(self, student, teacher, connector, data_samples=None
                   ) -> Dict[str, torch.Tensor]:
        dtype = torch.promote_types(student.dtype, torch.float32)
        s = self._vectors(student).to(dtype)
        t = self._vectors(teacher).detach().to(dtype)
        return {self.loss_name: pkt_loss(s, t, self.eps)}
