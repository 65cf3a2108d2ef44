"""CRD: contrastive representation distillation (Tian, Krishnan, Isola, ICLR 2020).

The student's embedding of an image is pulled towards the teacher's embedding of the *same*
image and pushed away from the teacher's embeddings of K other images, and symmetrically the
other way round. The K negatives come from two memory banks (one per side) holding a running
embedding of every training image, indexed by its dataset index::

    pooled features s (N, Ds), t (N, Dt)   (any other shape is flattened to (N, -1), as the
                                            authors' Embed does)
    e_s = l2norm(W_s s + b_s), e_t = l2norm(W_t t + b_t)       (N, D)   D = feat_dim (128)
    banks M_s, M_t (num_samples, D), rows of sample indices i (N,) and negatives j (N, K)
    idx = [i, j]                                                (N, K + 1), column 0 = i
    out_s = exp(<M_t[idx], e_s> / T) / Z_s                      (N, K + 1)  student anchor
    out_t = exp(<M_s[idx], e_t> / T) / Z_t                      (N, K + 1)  teacher anchor
    Z_* = mean(exp(...)) * num_samples of the first training batch (then constant)
    nce(P) = -( sum_n log(P_n0 / (P_n0 + K/num_samples + eps))
              + sum_{n,k>0} log((K/num_samples) / (P_nk + K/num_samples + eps)) ) / N
    loss = nce(out_s) + nce(out_t)
    after the loss: M_s[i] <- l2norm(m M_s[i] + (1 - m) e_s), M_t[i] likewise  (no gradient)

This is RepDistiller's ``CRDLoss`` (``crd/criterion.py``: ``Embed``, ``ContrastLoss``) and
``ContrastMemory`` (``crd/memory.py``), commit b84f547, and mdistiller's ``distillers/CRD.py``
(commit a08d46f, the same code), step for step: the banks are uniform in [-stdv, stdv],
stdv = 1 / sqrt(D / 3), drawn from torch's default generator (so a run's seed fixes them); the
scores use the banks *before* this batch's update; the banks and Z carry no gradient; the
teacher features carry none either (the teacher is frozen) but the teacher-side embedding
``W_t`` is trained, as in the authors' code. The only gradient of the student's features comes
through ``out_s``. Defaults: feat_dim 128, K 16384, T 0.07, momentum 0.5 (RepDistiller's
``train_student.py`` and mdistiller's ``CFG.CRD``); the authors weight the loss 0.8 with the
cross-entropy at 1 and no logit KD (``-a 0 -b 0.8``; ``CFG.CRD.LOSS.FEAT_WEIGHT``): set the
block's ``loss_weight=0.8``.

**State.** ``memory_student``, ``memory_teacher`` (num_samples, D), ``labels`` (num_samples,)
and ``z`` (2,) are registered buffers: saved in the distiller's checkpoint and restored on
resume. With :mod:`mmkd.hooks.random_state` restoring the generators, a resumed run continues
bit for bit (tests/test_crd.py). Memory: 2 x num_samples x D floats (CIFAR-100: 2 x 50,000 x
128 = 51 MB), and per step 2 x N x (K + 1) x D gathered bank rows (batch 64, K 16384: 1 GB in
float32, as in the authors' code).

**Sample indices.** Row ``i`` of a bank belongs to the image of dataset index ``i``: the
method reads it from each data sample's metainfo ``sample_idx``, which mmengine's
``BaseDataset.get_data_info`` sets (the index in the dataset) and mmpretrain's ``PackInputs``
keeps (``sample_idx`` is in its default ``meta_keys``). ``num_samples`` must be at least the
training set's length (``len(train_dataloader.dataset)``; CIFAR-100 50,000). A missing index
or one >= num_samples is an error that says what to set. (A dataset wrapper that renumbers its
items, e.g. ``ConcatDataset``, passes its sub-dataset's ``sample_idx``: give each part its own
CRD block or use one dataset.)

**Negatives** (where this differs from the authors). The authors draw the K negative indices in
the dataset (``dataset/cifar100.py``, ``CIFAR100InstanceSample``, mode ``'exact'``, the
default): K indices of images of *other classes* than the anchor, without replacement (with
replacement when K exceeds their number). mmkd has no special dataset, so the method draws
them itself from torch's default generator, ``negatives=``:

* ``'other_class'`` (default, the authors' 'exact'): a ``labels`` buffer records the class of
  each index as its sample is seen (-1 = not seen yet); the candidates of an anchor of class c
  are the indices whose recorded class is not c, unseen ones included, the anchor's own
  index excluded. After the first epoch every label is known and the candidates are exactly
  the authors' set; during the first epoch unseen images of the anchor's own class may also be
  drawn (their rows are still the random initialisation, as the authors' rows of unseen images
  are). Without replacement, or with replacement when an anchor has fewer than K candidates
  (the authors' rule).
* ``'uniform'``: K indices uniform over all num_samples, with replacement, possibly the anchor
  itself (the authors' ``ContrastMemory`` when no indices are given: ``AliasMethod`` over
  uniform unigrams).

``forward(..., contrast_idx=...)`` takes given (N, K + 1) indices instead (column 0 must be the
anchors' indices), as the authors' ``ContrastMemory(v1, v2, y, idx)`` does; the fidelity test
uses it.

**Several processes (DDP).** Each rank scores its own batch, then the embeddings, indices and
labels of all ranks are all-gathered (``torch.distributed``, when initialised with more than one
process; batches of different sizes are padded for the gather) and every rank applies the same
update, so the banks stay identical across ranks, equal to one process's update over the
concatenated batch; Z is set from the mean over all ranks' first batches. (DDP's own buffer
broadcast from rank 0 would otherwise keep only rank 0's updates.) An index that appears twice
in one (gathered) batch -- a sampler padding the last batch -- is updated once, with its first
occurrence, so the update does not depend on the order of a scatter.

The banks are updated only in training mode (``self.training``); in eval mode the loss is
computed without changing any state.
"""
import math
from typing import Annotated, Dict, Literal, Optional, Tuple

import torch
import torch.distributed as dist
import torch.nn as nn

from ..registry import MODELS
from ..utils.arguments import Interval, PositiveFloat, PositiveInt
from .base import BaseDistillMethod, flatten_levels, gt_labels


def _l2norm(x: torch.Tensor) -> torch.Tensor:
    """x / ||x||_2 over dim 1 (the authors' ``Normalize(2)``: no epsilon)."""
    return x.div(x.pow(2).sum(1, keepdim=True).pow(0.5))


def _world_size() -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def all_gather_rows(*tensors: torch.Tensor) -> Tuple[torch.Tensor, ...]:
    """Concatenate each tensor's rows over all ranks (rank order); the tensors of one rank
    share their first dimension, which may differ between ranks. Identity in one process."""
    world = _world_size()
    if world == 1:
        return tensors
    device = tensors[0].device
    n = torch.tensor([tensors[0].shape[0]], device=device, dtype=torch.long)
    sizes = [torch.zeros_like(n) for _ in range(world)]
    dist.all_gather(sizes, n)
    sizes = [int(s.item()) for s in sizes]
    longest = max(sizes)
    out = []
    for t in tensors:
        padded = t.new_zeros((longest, ) + tuple(t.shape[1:]))
        padded[:t.shape[0]] = t
        parts = [torch.empty_like(padded) for _ in range(world)]
        dist.all_gather(parts, padded.contiguous())
        out.append(torch.cat([p[:s] for p, s in zip(parts, sizes)]))
    return tuple(out)


def _all_mean(total: torch.Tensor, count: int) -> torch.Tensor:
    """Sum over ranks of ``total`` divided by the sum of ``count``."""
    if _world_size() == 1:
        return total / count
    both = torch.stack([total.detach().double(), total.new_tensor(count).double()])
    dist.all_reduce(both)
    return (both[0] / both[1]).to(total.dtype)


def nce_loss(x: torch.Tensor, num_samples: int, eps: float) -> torch.Tensor:
    """RepDistiller's ``ContrastLoss`` (Eq. 18 of the paper) of (N, K + 1) normalised scores,
    column 0 the positive, with the uniform noise distribution 1 / num_samples."""
    m = x.shape[1] - 1
    mpn = m / float(num_samples)
    log_d1 = torch.log(x[:, 0] / (x[:, 0] + (mpn + eps)))
    log_d0 = torch.log(mpn / (x[:, 1:] + (mpn + eps)))
    return -(log_d1.sum() + log_d0.sum()) / x.shape[0]


@MODELS.register_module()
class CRD(BaseDistillMethod):
    """Contrastive representation distillation with memory banks of every training image's
    embedding (module docstring: data flow, state, sample indices, negatives, DDP).

    Args:
        num_samples (int): rows of the memory banks: the number of training images (the
            training dataset's length; CIFAR-100 50,000); every ``sample_idx`` must be below
            it. It also sets the noise probability 1 / num_samples of the NCE loss (the
            authors' ``n_data``). Required.
        feat_dim (int): width D of the embedding heads and the banks. Default 128 (the
            authors' ``--feat_dim``, ``CFG.CRD.FEAT.DIM``).
        nce_k (int): negatives K per anchor; must be below num_samples. Default 16384 (the
            authors' ``--nce_k``, ``CFG.CRD.NCE.K``, for CIFAR-100's 50,000 images; use fewer
            on a small dataset).
        temperature (float): T of the scores exp(<., .> / T). Default 0.07 (``--nce_t``).
        momentum (float): m of the bank update m * row + (1 - m) * embedding, in [0, 1).
            Default 0.5 (``--nce_m``).
        negatives (str): how negative indices are drawn: ``'other_class'`` (default; the
            authors' 'exact' mode, from indices of other classes, by a label buffer filled as
            samples are seen) or ``'uniform'`` (uniform over all rows, the authors'
            ``ContrastMemory`` fallback). See the module docstring.
        eps (float): the constant added in the NCE loss's denominators. Default 1e-7 (the
            authors').
        init_cfg (dict | list[dict], optional): initialisation of the embedding heads.
            Default None: ``nn.Linear``'s own, as the authors'.

    Block: one pooled feature per side and image, e.g. ``'neck'`` of an mmpretrain classifier
    (the authors' ``feat[-1]``, mdistiller's ``pooled_feat``), widths free (the heads map
    both to feat_dim); the data samples must carry ``sample_idx`` (and ``gt_label`` for
    'other_class'). Returns ``loss_crd`` (the authors' CRD loss, the two sides summed) and the
    diagnostic ``crd_pos_cos`` (mean cosine of a student embedding and its teacher-bank row).

    References:
        Paper: Tian, Krishnan, Isola, "Contrastive Representation Distillation", ICLR 2020
            (arXiv 1910.10699).
        Code: the authors', https://github.com/HobbitLong/RepDistiller (``crd/criterion.py``,
            ``crd/memory.py``, ``dataset/cifar100.py``), and
            https://github.com/megvii-research/mdistiller (``distillers/CRD.py``).
    """

    def __init__(self, num_samples: PositiveInt, feat_dim: PositiveInt = 128,
                 nce_k: PositiveInt = 16384, temperature: PositiveFloat = 0.07,
                 momentum: Annotated[float, Interval(ge=0, lt=1)] = 0.5,
                 negatives: Literal['other_class', 'uniform'] = 'other_class',
                 eps: PositiveFloat = 1e-7, **kwargs):
        super().__init__(**kwargs)
        if nce_k >= num_samples:
            raise ValueError(
                f'CRD argument nce_k ({nce_k}) must be smaller than num_samples ({num_samples}, '
                'the training set\'s length): the negatives are drawn among the other '
                f'samples. Set nce_k below {num_samples} (the authors use 16384 for CIFAR-100\'s '
                '50,000 images).')
        self.num_samples, self.feat_dim, self.nce_k = int(num_samples), int(feat_dim), int(nce_k)
        self.temperature, self.momentum = float(temperature), float(momentum)
        self.negatives, self.eps = negatives, float(eps)
        stdv = 1.0 / math.sqrt(feat_dim / 3)
        for side in ('student', 'teacher'):
            self.register_buffer(f'memory_{side}', torch.rand(num_samples, feat_dim)
                                 .mul_(2 * stdv).add_(-stdv))
        self.register_buffer('labels', torch.full((num_samples, ), -1, dtype=torch.long))
        self.register_buffer('z', torch.full((2, ), -1.0))  # Z_s, Z_t; < 0: not set yet
        self.embed_student: Optional[nn.Linear] = None
        self.embed_teacher: Optional[nn.Linear] = None

    @staticmethod
    def _one(x, side: str) -> torch.Tensor:
        levels = flatten_levels(x)
        if len(levels) != 1:
            raise ValueError(f'CRD embeds one feature per side; the {side} gives {len(levels)} '
                             'levels: record one point or index one level (e.g. "neck[-1]").')
        v = levels[0]
        if v.dim() < 2:
            raise ValueError(f'CRD needs (N, D) features (or maps, flattened); the {side} '
                             f'gives {tuple(v.shape)}.')
        return v.reshape(v.shape[0], -1)

    def build(self, student, teacher) -> None:
        s, t = self._one(student, 'student'), self._one(teacher, 'teacher')
        if s.shape[0] != t.shape[0]:
            raise ValueError(f'CRD pairs the images of one batch: student batch {s.shape[0]}, '
                             f'teacher batch {t.shape[0]}.')
        self.embed_student = nn.Linear(s.shape[1], self.feat_dim).to(s.device)
        self.embed_teacher = nn.Linear(t.shape[1], self.feat_dim).to(t.device)
        super().build(student, teacher)

    def sample_indices(self, data_samples, batch: int, device) -> torch.Tensor:
        """(N,) dataset indices from the data samples' metainfo ``sample_idx``."""
        if data_samples is None or len(data_samples) != batch:
            raise ValueError(f'CRD needs one data sample per image with its dataset index '
                             f'(metainfo sample_idx), got {data_samples!r:.80}.')
        missing = [k for k, s in enumerate(data_samples) if getattr(s, 'sample_idx', None) is None]
        if missing:
            raise ValueError(
                f'CRD indexes its memory banks by the dataset index of each image, but data '
                f'sample {missing[0]} has no metainfo "sample_idx". mmengine\'s BaseDataset '
                'sets it and mmpretrain\'s PackInputs keeps it by default: use a dataset '
                'derived from BaseDataset and, if PackInputs is given meta_keys, include '
                '"sample_idx" in them.')
        idx = torch.tensor([int(s.sample_idx) for s in data_samples], dtype=torch.long,
                           device=device)
        if idx.min() < 0 or idx.max() >= self.num_samples:
            bad = int(idx.max() if idx.max() >= self.num_samples else idx.min())
            raise ValueError(
                f'CRD got sample_idx {bad}, outside its memory banks of num_samples='
                f'{self.num_samples} rows: set the method\'s num_samples to the training '
                'dataset\'s length (len(train_dataloader.dataset)).')
        return idx

    def draw_negatives(self, idx: torch.Tensor, labels: Optional[torch.Tensor]) -> torch.Tensor:
        """(N, K + 1) indices: column 0 ``idx``, then K negatives (module docstring), drawn
        from torch's default generator of ``idx``'s device."""
        n, k = idx.shape[0], self.nce_k
        if self.negatives == 'uniform':
            neg = torch.randint(0, self.num_samples, (n, k), device=idx.device)
        else:
            candidates = self.labels[None, :] != labels[:, None]  # (N, num_samples)
            candidates[torch.arange(n, device=idx.device), idx] = False  # not the anchor
            counts = candidates.sum(1)
            if int(counts.min()) == 0:
                raise ValueError('CRD (negatives="other_class"): every sample seen so far is of '
                                 'the anchor\'s class; no negative can be drawn.')
            replace = bool(counts.min() < k)  # the authors: replace=True if k > len(negatives)
            neg = torch.multinomial(candidates.float(), k, replacement=replace)
        return torch.cat([idx[:, None], neg], dim=1)

    @torch.no_grad()
    def _update(self, idx: torch.Tensor, e_s: torch.Tensor, e_t: torch.Tensor,
                labels: Optional[torch.Tensor]) -> None:
        lab = labels if labels is not None else torch.full_like(idx, -1)
        idx, e_s, e_t, lab = all_gather_rows(idx, e_s.detach(), e_t.detach(), lab)
        # one update per index (its first occurrence), whatever the order of a scatter
        uniq, inverse = torch.unique(idx, return_inverse=True)
        order = torch.arange(idx.shape[0], device=idx.device)
        first = torch.full_like(uniq, idx.shape[0]).scatter_reduce_(0, inverse, order, 'amin')
        idx, lab = idx[first], lab[first]
        m = self.momentum
        for bank, e in ((self.memory_student, e_s[first]), (self.memory_teacher, e_t[first])):
            pos = bank.index_select(0, idx).to(e.dtype)
            pos.mul_(m)
            pos.add_(torch.mul(e, 1 - m))
            bank.index_copy_(0, idx, _l2norm(pos).to(bank.dtype))
        if labels is not None:
            self.labels.index_copy_(0, idx, lab)

    def forward(self, student, teacher, data_samples=None,
                contrast_idx: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        s, t = self._one(student, 'student'), self._one(teacher, 'teacher').detach()
        dtype = torch.promote_types(s.dtype, torch.float32)  # float32 under AMP
        n = s.shape[0]
        idx = self.sample_indices(data_samples, n, s.device)
        labels = (gt_labels(data_samples, n, s.device, 'CRD (negatives="other_class")')
                  if self.negatives == 'other_class' else None)
        e_s = _l2norm(self.embed_student(s.to(self.embed_student.weight.dtype)).to(dtype))
        e_t = _l2norm(self.embed_teacher(t.to(self.embed_teacher.weight.dtype)).to(dtype))
        if contrast_idx is None:
            contrast_idx = self.draw_negatives(idx, labels)
        elif contrast_idx.shape != (n, self.nce_k + 1) or not torch.equal(contrast_idx[:, 0],
                                                                          idx):
            raise ValueError(f'CRD contrast_idx must be (N, nce_k + 1) = ({n}, '
                             f'{self.nce_k + 1}) with the anchors\' indices in column 0, got '
                             f'{tuple(contrast_idx.shape)}.')
        flat = contrast_idx.reshape(-1)
        w_t = self.memory_teacher.index_select(0, flat).to(dtype).view(n, -1, self.feat_dim)
        w_s = self.memory_student.index_select(0, flat).to(dtype).view(n, -1, self.feat_dim)
        out_s = torch.exp(torch.bmm(w_t, e_s[:, :, None]).squeeze(2) / self.temperature)
        out_t = torch.exp(torch.bmm(w_s, e_t[:, :, None]).squeeze(2) / self.temperature)
        if self.z[0] < 0:  # the authors: Z from the first batch, then constant
            with torch.no_grad():
                count = out_s.numel()
                self.z[0] = _all_mean(out_s.detach().sum(), count) * self.num_samples
                self.z[1] = _all_mean(out_t.detach().sum(), count) * self.num_samples
        z = self.z.to(dtype)
        loss = (nce_loss(out_s / z[0], self.num_samples, self.eps)
                + nce_loss(out_t / z[1], self.num_samples, self.eps))
        pos_cos = (w_t[:, 0] * e_s).sum(1).mean().detach()
        if self.training:
            self._update(idx, e_s, e_t, labels)
        return dict(loss_crd=loss, crd_pos_cos=pos_cos)
