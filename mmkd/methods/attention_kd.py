"""Attention-based feature distillation: AT on fixed layer pairs, and over many layers AFD and
RTK.

AT -- "Paying More Attention to Attention" (Zagoruyko, Komodakis, ICLR 2017; authors' code
szagoruyko/attention-transfer; mdistiller ``distillers/AT.py``, whose CIFAR settings we use)::

    for each (student, teacher) pair of maps, the larger first average-pooled to the smaller
    a(f) = L2-normalise(flatten(mean_c f^p))                  (N, H*W)   p = 2
    loss = sum over pairs of mean_{n, positions} (a(f_s) - a(f_t))^2

  Channel counts need not match. mdistiller pairs the outputs of every stage (CIFAR ResNets:
  ``backbone.layer1..3``) with weight 1000, CE weight 1, no logit KD.

AFD -- "Show, Attend and Distill: Knowledge Distillation via Attention-based Feature Matching"
(Ji, Heo, Park, AAAI 2021; authors' code clovaai/attention-feature-distillation). Instead of
hand-picked (student layer, teacher layer) pairs, every teacher layer attends over every student
layer and the attention decides which pairs to match::

    for each layer, pooled = global average of its map (N, C)
    query_t = BN(Linear(pooled_t))                          (N, T, d)      teacher side
    key_s   = ReLU(BN(Linear(pooled_s)))                    (N, S, d)      student side
    key_ts  = BN(Linear_d->T*d(key_s)) reshaped             (N, S, T, d)   one key per pair
    logit   = (<query_t, key_ts> + <p_t, p_s>) / sqrt(d)    (N, T, S), p = learned positions
    attn    = softmax over student layers s
    value_t = normalise(flatten(mean_c(f_t^2)))             spatial attention map of layer t
    value_s = normalise(flatten(avgpool_to_t(mean_c(f_s^2))))  resized to teacher t's size
    loss    = mean_n sum_t sum_s attn[n, t, s] * mean((value_s - value_t)^2)

  ``avgpool_to_t`` is ``F.adaptive_avg_pool2d`` to the teacher map's (H, W), as in the authors'
  code, for every (student, teacher) pair. A larger student map is averaged over windows; a
  *smaller* one is upsampled by it, and adaptive pooling upsamples by repeating values (each
  output cell is the mean of the input cells it overlaps: an integer factor copies every value
  into a block, nearest-neighbour style; other factors also average two neighbours on some
  rows or columns), never by interpolating: a blocky map against a finer one. With candidates
  at several strides some pairs always do that (the authors' CIFAR setting too), and the
  attention can weight them down; ``build`` warns once when a layer has *only* such pairs
  (:func:`layers_matched_by_upsampling`): the points' strides do not match.

RTK -- "Representative Teacher Keys for Knowledge Distillation Model Compression Based on
Attention Mechanism for Image Classification" (Yang, Kao, Huang, arXiv 2206.12788). Only the
abstract is available and no code was found, so this is a RECONSTRUCTION from the abstract:
teacher features act as keys that each student layer attends to (the roles of AFD reversed,
softmax over teacher layers), and only *representative* teacher keys are kept, so teacher layers
irrelevant to a student layer are filtered out of its target. The selection rule is our choice
and configurable: 'topk' (the k highest-scoring teacher keys per student query, default k = half
of the teacher layers), 'threshold' (keys whose attention is at least a threshold, always
keeping the best one) or 'all' (plain attention matching over every teacher layer).

Loss scale of RTK. Each of AFD's T teacher rows of attention sums to 1 (total mass T per
sample); each of RTK's S student rows sums to 1 (total mass S). Summed as is, RTK's loss is S/T
of AFD's for the same pair distances (1/3 with WRN-40-2 -> WRN-16-2, T = 18, S = 6), so AFD's
published weight (200 on CIFAR) would mean a third as much in RTK. RTK therefore multiplies its
sum by T/S by default (``normalize='teacher_layers'``): the total attention mass is T, as in
AFD, and with uniform attention and every key kept RTK's loss *equals* AFD's. The abstract gives
no loss scale, so this is our choice, made so that RTK can use AFD's weights;
``normalize='none'`` keeps the raw sum.

Reading the attention (AFD and RTK; ``tools/analysis/attention_maps.py`` uses it). Every forward
keeps, detached, the attention its loss used, in one orientation for both methods: (N, S, T),
row s = the block's s-th student level, column t = its t-th teacher level, in the block's point
order (FPN tuples flattened in place). AFD's softmax runs over student layers (each column sums
to 1, ``softmax_over = 'student'``), RTK's over teacher keys (each row sums to 1,
``softmax_over = 'teacher'``)::

    method.last_attention          # (N, S, T) of the last forward, or None
    method.last_kept_keys          # RTK: bool (N, S, T), the representative keys kept; AFD: None
    method.reset_attention_stats() # start (or restart) a running mean; off until called
    stats = method.attention_stats # AttentionStats: .mean (S, T), .kept_fraction (S, T) or
                                   # None, .num_samples; None while not tracking

Cost: a detach per forward, and while tracking one (S, T) sum per forward; nothing is kept
with grad, nothing enters the state dict.
"""
import logging
import math
from typing import Annotated, Dict, List, Literal, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.logging import print_log

from ..registry import MODELS
from ..utils.arguments import InitCfg, Interval, LossName, PositiveFloat, PositiveInt
from .base import BaseDistillMethod, LevelwiseMethod, flatten_levels


def spatial_attention_map(x: torch.Tensor, size: Optional[Sequence[int]] = None
                          ) -> torch.Tensor:
    """(N, C, H, W) -> (N, H'*W'): channel mean of squared activations, resized to ``size``
    when given by adaptive average pooling (AFD resizes student maps to the teacher layer's
    size: averaged over windows when larger, values repeated over blocks when smaller; see the
    module docstring), L2-normalised."""
    att = x.float().pow(2).mean(dim=1, keepdim=True)
    if size is not None and tuple(att.shape[2:]) != tuple(size):
        att = F.adaptive_avg_pool2d(att, size)
    return F.normalize(att.flatten(1), dim=1)


def layers_matched_by_upsampling(student: Sequence[torch.Tensor],
                                 teacher: Sequence[torch.Tensor], query_side: str) -> List[int]:
    """Indices of the query layers (``query_side``: 'teacher' for AFD, 'student' for RTK)
    whose every pair needs the student map upsampled: AFD/RTK compare a pair at the teacher
    map's size, so a student map smaller than the teacher map in height or width is upsampled
    (values repeated). For AFD, teacher layers larger than every student map; for RTK, student
    layers smaller than every teacher map."""
    s_sizes = [tuple(m.shape[2:]) for m in student]
    t_sizes = [tuple(m.shape[2:]) for m in teacher]

    def upsampled(s, t):
        return s[0] < t[0] or s[1] < t[1]

    if query_side == 'student':
        return [i for i, s in enumerate(s_sizes) if all(upsampled(s, t) for t in t_sizes)]
    return [j for j, t in enumerate(t_sizes) if all(upsampled(s, t) for s in s_sizes)]


class LinearBN(nn.Sequential):
    """Linear + BatchNorm1d [+ ReLU] on pooled features: (M, C_in) -> (M, C_out)."""

    def __init__(self, in_features: int, out_features: int, relu: bool = False):
        layers = [nn.Linear(in_features, out_features), nn.BatchNorm1d(out_features)]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class AttentionStats:
    """Running sums of a layer-attention method's attention over samples (see the module
    docstring, "Reading the attention").

    ``mean``: (S, T), ``sum_n attn[n] / num_samples``, the mean over every sample seen since
    :meth:`_LayerAttention.reset_attention_stats` (a short last batch counts by its samples);
    ``kept_fraction``: (S, T), the fraction of those samples for which RTK kept pair (s, t)
    (None for a method without a selection, AFD); ``num_samples``: N summed over the forwards.
    Sums stay on the method's device until read; read values are float32 CPU tensors.
    """

    def __init__(self):
        self.num_samples = 0
        self._attention_sum: Optional[torch.Tensor] = None
        self._kept_sum: Optional[torch.Tensor] = None

    def update(self, attention: torch.Tensor, kept: Optional[torch.Tensor] = None) -> None:
        """Add a batch: ``attention`` (N, S, T), ``kept`` bool (N, S, T) or None."""
        attention = attention.detach()
        total = attention.float().sum(dim=0)
        self._attention_sum = total if self._attention_sum is None \
            else self._attention_sum + total
        if kept is not None:
            count = kept.detach().float().sum(dim=0)
            self._kept_sum = count if self._kept_sum is None else self._kept_sum + count
        self.num_samples += attention.shape[0]

    @property
    def mean(self) -> Optional[torch.Tensor]:
        if self._attention_sum is None:
            return None
        return (self._attention_sum / self.num_samples).cpu()

    @property
    def kept_fraction(self) -> Optional[torch.Tensor]:
        if self._kept_sum is None:
            return None
        return (self._kept_sum / self.num_samples).cpu()


class _LayerAttention(BaseDistillMethod):
    """Shared machinery: per-layer queries on one side, per-pair bilinear keys on the other,
    learned positional embeddings, and spatial-attention-map values.

    ``query_side`` is 'teacher' (AFD) or 'student' (RTK). Inputs: lists of maps (N, C, H, W)
    from each model (any number of layers on each side; FPN tuples are flattened).
    """
    query_side = 'teacher'
    #: The side the softmax runs over: 'student' (AFD: each teacher column of the (S, T)
    #: attention sums to 1) or 'teacher' (RTK: each student row does).
    softmax_over = 'student'

    def __init__(self, qk_dim: PositiveInt = 128, loss_name: LossName = 'loss_attn',
                 init_cfg: InitCfg = None):
        super().__init__(init_cfg=init_cfg)
        self.qk_dim = qk_dim
        self.loss_name = loss_name
        # The read-out (module docstring): plain attributes, not buffers or state.
        self._last_attention: Optional[torch.Tensor] = None
        self._last_kept_keys: Optional[torch.Tensor] = None
        self._attention_stats: Optional[AttentionStats] = None

    # ------------------------------------------------------------ attention read-out
    @property
    def last_attention(self) -> Optional[torch.Tensor]:
        """(N, S, T), detached: the attention the last forward's loss used, student levels as
        rows and teacher levels as columns in the block's order, whichever side queries (AFD's
        own (N, T, S) transposed). None before the first forward."""
        return self._last_attention

    @property
    def last_kept_keys(self) -> Optional[torch.Tensor]:
        """Bool (N, S, T): the pairs the last forward kept (RTK's representative teacher keys);
        None for a method that keeps every pair (AFD)."""
        return self._last_kept_keys

    @property
    def attention_stats(self) -> Optional[AttentionStats]:
        """The running mean since :meth:`reset_attention_stats` (:class:`AttentionStats`), or
        None when not tracking (the default: nothing accumulates during training)."""
        return self._attention_stats

    def reset_attention_stats(self, track: bool = True) -> None:
        """Start (``track=True``) a new running mean, dropping the old one, or stop tracking
        (``track=False``)."""
        self._attention_stats = AttentionStats() if track else None

    def _keep_attention(self, attention: torch.Tensor,
                        kept: Optional[torch.Tensor] = None) -> None:
        """Called by ``forward`` with the (N, S, T) attention its loss used (and RTK's kept
        mask): a detached reference, and the running sums while tracking."""
        self._last_attention = attention.detach()
        self._last_kept_keys = None if kept is None else kept.detach()
        if self._attention_stats is not None:
            self._attention_stats.update(self._last_attention, self._last_kept_keys)

    @staticmethod
    def _maps(x, side: str) -> List[torch.Tensor]:
        maps = flatten_levels(x)
        for m in maps:
            if m.dim() != 4:
                raise ValueError(f'Attention-based distillation needs (N, C, H, W) maps; a '
                                 f'{side} layer gives shape {tuple(m.shape)}.')
        return maps

    def build(self, student, teacher) -> None:
        s_maps, t_maps = self._maps(student, 'student'), self._maps(teacher, 'teacher')
        queries, keys = (t_maps, s_maps) if self.query_side == 'teacher' else (s_maps, t_maps)
        d = self.qk_dim
        self.query_layers = nn.ModuleList(LinearBN(m.shape[1], d) for m in queries)
        self.key_layers = nn.ModuleList(LinearBN(m.shape[1], d, relu=True) for m in keys)
        # One key per (key layer, query layer) pair from a single shared map.
        self.bilinear = LinearBN(d, d * len(queries))
        self.query_pos = nn.Parameter(torch.empty(len(queries), d))
        self.key_pos = nn.Parameter(torch.empty(len(keys), d))
        nn.init.xavier_normal_(self.query_pos)
        nn.init.xavier_normal_(self.key_pos)
        self._warn_if_upsampling(s_maps, t_maps)
        super().build(student, teacher)

    def _warn_if_upsampling(self, s_maps: Sequence[torch.Tensor],
                            t_maps: Sequence[torch.Tensor]) -> None:
        """Warn once per method instance (at build, the dry run) when a query layer can only be
        compared with upsampled student maps (:func:`layers_matched_by_upsampling`): a
        blocky map against a finer one, because the points' strides do not match."""
        found = layers_matched_by_upsampling(s_maps, t_maps, self.query_side)
        if not found or getattr(self, '_warned_upsampling', False):
            return
        self._warned_upsampling = True

        def sizes(maps, indices=None):
            indices = range(len(maps)) if indices is None else indices
            return ', '.join(f'{i}: {maps[i].shape[2]}x{maps[i].shape[3]}' for i in indices)

        if self.query_side == 'student':
            what = (f'student maps {{{sizes(s_maps, found)}}} are smaller (in height or width) '
                    f'than every teacher map {{{sizes(t_maps)}}}; each student layer is compared '
                    'with the teacher layers at their sizes, so these are compared only after '
                    'being upsampled')
        else:
            what = (f'teacher maps {{{sizes(t_maps, found)}}} are larger (in height or width) '
                    f'than every student map {{{sizes(s_maps)}}}; each teacher layer is compared '
                    'with the student layers at its own size, so these are compared only with '
                    'student maps upsampled')
        print_log(
            f'{type(self).__name__}: {what} by adaptive average pooling, which '
            'repeats each value over a block of positions (nearest-neighbour style, no '
            f'interpolation). Student maps {[tuple(m.shape) for m in s_maps]}, teacher maps '
            f'{[tuple(m.shape) for m in t_maps]}. Record points of matching stride: student '
            'points as fine as the teacher\'s or finer (an earlier student stage, or a later, '
            'coarser teacher stage; docs/methods/afd_rtk.md, "Maps of other sizes").',
            logger='current', level=logging.WARNING)

    def attention_logits(self, student, teacher) -> torch.Tensor:
        """(N, Q, K) scaled logits: Q query layers, K key layers."""
        s_maps, t_maps = self._maps(student, 'student'), self._maps(teacher, 'teacher')
        queries, keys = (t_maps, s_maps) if self.query_side == 'teacher' else (s_maps, t_maps)
        n, num_q, num_k = queries[0].shape[0], len(queries), len(keys)
        if num_q != len(self.query_layers) or num_k != len(self.key_layers):
            raise ValueError(f'{type(self).__name__} was built for {len(self.query_layers)} '
                             f'{self.query_side} and {len(self.key_layers)} other layers, got '
                             f'{num_q} and {num_k}.')
        query = torch.stack([layer(m.float().mean(dim=(2, 3)))
                             for layer, m in zip(self.query_layers, queries)], dim=1)  # N,Q,d
        key = torch.stack([layer(m.float().mean(dim=(2, 3)))
                           for layer, m in zip(self.key_layers, keys)], dim=1)  # N,K,d
        pair_keys = self.bilinear(key.reshape(n * num_k, -1)).view(n, num_k, num_q, -1)
        logits = torch.einsum('nkqd,nqd->nqk', pair_keys, query)
        logits = logits + self.query_pos @ self.key_pos.t()
        return logits / math.sqrt(self.qk_dim)

    def pair_distances(self, student, teacher) -> torch.Tensor:
        """(N, T, S): mean squared difference of the spatial attention maps of teacher layer t
        and student layer s (resized to t's size by adaptive average pooling)."""
        s_maps, t_maps = self._maps(student, 'student'), self._maps(teacher, 'teacher')
        student_values = {}  # pooled student maps, once per distinct teacher size (as AFD does)
        rows = []
        for t_map in t_maps:
            size = tuple(t_map.shape[2:])
            if size not in student_values:
                student_values[size] = torch.stack(
                    [spatial_attention_map(s, size) for s in s_maps], dim=1)  # N, S, H*W
            v_t = spatial_attention_map(t_map)
            rows.append((student_values[size] - v_t.unsqueeze(1)).pow(2).mean(dim=2))
        return torch.stack(rows, dim=1)


@MODELS.register_module()
class AFD(_LayerAttention):
    """Attention-based feature distillation (Ji et al., AAAI 2021), as in the authors' code.

    Block: many layers per side, each a map (N, C, H, W) of any channel count and size (e.g.
    ``student='backbone.layer*.*'``, every residual block; FPN tuples are flattened). Each
    teacher layer's query attends over all student layers; each student map is
    adaptive-average-pooled to each teacher map's size (which repeats values where the student
    map is smaller). Returns ``loss_afd`` (see the module docstring for the formula); the
    authors weight it 200 on CIFAR, next to KD at T = 4 with weight 0.9. The attention the loss
    used is readable as (N, S, T), with a running mean: ``last_attention``,
    ``reset_attention_stats()``, ``attention_stats`` (module docstring, "Reading the
    attention"; ``tools/analysis/attention_maps.py``).

    Args:
        qk_dim (int): query/key width. Default 128 (authors).
        loss_name (str): key of the returned loss. Default 'loss_afd'.

    References:
        Paper: Ji, Heo, Park, "Show, Attend and Distill: Knowledge Distillation via
            Attention-based Feature Matching", AAAI 2021 (arXiv 2102.02973).
        Code: the authors', https://github.com/clovaai/attention-feature-distillation.
    """
    query_side = 'teacher'

    def __init__(self, qk_dim: PositiveInt = 128, loss_name: LossName = 'loss_afd', **kwargs):
        super().__init__(qk_dim=qk_dim, loss_name=loss_name, **kwargs)

    def attention(self, student, teacher) -> torch.Tensor:
        """(N, T, S), rows (teacher layers) sum to 1 over student layers."""
        return self.attention_logits(student, teacher).softmax(dim=2)

    def forward(self, student, teacher, data_samples=None) -> Dict[str, torch.Tensor]:
        attn = self.attention(student, teacher)  # N, T, S
        self._keep_attention(attn.transpose(1, 2))  # read out as (N, S, T)
        dist = self.pair_distances(student, teacher)
        return {self.loss_name: (attn * dist).sum(dim=(1, 2)).mean()}


@MODELS.register_module()
class RTK(_LayerAttention):
    """Representative Teacher Keys (Yang et al., arXiv 2206.12788), reconstructed from the
    abstract (no paper text or code available): each student layer queries the teacher layers,
    keeps only representative teacher keys, and matches the attention-weighted spatial maps.

    The reconstruction: queries from student layers, one bilinear key per (teacher, student)
    pair from pooled teacher layers, positional embeddings, scaled logits (AFD's machinery with
    the roles reversed); non-selected keys get zero attention (masked before the softmax),
    so their teacher layers do not enter the loss at all::

        loss = T/S * mean_n sum_s sum_{t kept for s} attn[n, s, t] * mean((value_s->t - value_t)^2)

    The factor T/S (``normalize='teacher_layers'``, default) puts RTK on AFD's scale: AFD's
    attention has one unit of mass per teacher layer (T in all), RTK's one per student layer
    (S), so without it RTK's loss is S/T of AFD's for the same distances (a third for
    WRN-40-2 -> WRN-16-2) and AFD's weights (200 on CIFAR) would not carry over. With it, RTK
    with ``selection='all'`` and uniform attention gives exactly AFD's loss. Our choice (the
    abstract states no scale); ``normalize='none'`` returns the raw sum.

    Block: as :class:`AFD`, many layers per side, maps (N, C, H, W) (e.g. the four backbone
    stages, ``student='backbone.layer*'``). Returns ``loss_rtk`` and logs ``kept_keys``, the
    mean number of teacher keys kept per student layer. The attention and the kept keys are
    readable as (N, S, T), with running means: ``last_attention``, ``last_kept_keys``,
    ``reset_attention_stats()``, ``attention_stats`` (module docstring, "Reading the
    attention"; ``tools/analysis/attention_maps.py``).

    Args:
        selection (str): 'topk' (default), 'threshold' or 'all' (plain attention matching).
        num_keys (int, optional): k for 'topk'; default ceil(T / 2) of the T teacher layers.
        threshold (float): for 'threshold': keep keys with softmax attention >= threshold
            (the best key is always kept), then renormalise. Default 0.1.
        normalize (str): 'teacher_layers' (default): multiply the summed loss by T/S, so
            the total attention mass is T as in AFD and AFD's loss weights apply; 'none': the
            raw sum over the S student queries.
        qk_dim (int): query/key width. Default 128.
        loss_name (str): key of the returned loss. Default 'loss_rtk'.

    References:
        Paper: Yang, Kao, Huang, "Knowledge Distillation with Representative Teacher Keys
            Based on Attention Mechanism for Image Classification Model Compression" (arXiv
            2206.12788; also listed as "Representative Teacher Keys for Knowledge
            Distillation Model Compression Based on Attention Mechanism for Image
            Classification"): its abstract only.
        Code: none public; reconstructed on AFD's machinery (:class:`AFD`).
    """
    query_side = 'student'
    softmax_over = 'teacher'

    def __init__(self, selection: Literal['topk', 'threshold', 'all'] = 'topk',
                 num_keys: Optional[PositiveInt] = None,
                 threshold: Annotated[float, Interval(ge=0, le=1)] = 0.1,
                 normalize: Literal['teacher_layers', 'none'] = 'teacher_layers',
                 qk_dim: PositiveInt = 128, loss_name: LossName = 'loss_rtk', **kwargs):
        super().__init__(qk_dim=qk_dim, loss_name=loss_name, **kwargs)
        self.selection, self.num_keys, self.threshold = selection, num_keys, threshold
        self.normalize = normalize

    def key_mask(self, logits: torch.Tensor) -> torch.Tensor:
        """Boolean (N, S, T): the representative teacher keys kept for each student query."""
        num_t = logits.shape[2]
        if self.selection == 'all':
            return torch.ones_like(logits, dtype=torch.bool)
        if self.selection == 'topk':
            k = min(self.num_keys or math.ceil(num_t / 2), num_t)
            idx = logits.topk(k, dim=2).indices
            return torch.zeros_like(logits, dtype=torch.bool).scatter_(2, idx, True)
        probs = logits.detach().softmax(dim=2)
        best = probs == probs.max(dim=2, keepdim=True).values
        return (probs >= self.threshold) | best

    def attention_and_keys(self, student, teacher) -> Tuple[torch.Tensor, torch.Tensor]:
        """The attention (N, S, T) of :meth:`attention` and the bool (N, S, T) mask of the
        kept keys (:meth:`key_mask`) it was computed with."""
        logits = self.attention_logits(student, teacher)
        mask = self.key_mask(logits)
        return logits.masked_fill(~mask, float('-inf')).softmax(dim=2), mask

    def attention(self, student, teacher) -> torch.Tensor:
        """(N, S, T): each student layer's attention over the kept teacher keys (sums to 1;
        dropped keys are exactly 0)."""
        return self.attention_and_keys(student, teacher)[0]

    def forward(self, student, teacher, data_samples=None) -> Dict[str, torch.Tensor]:
        attn, kept = self.attention_and_keys(student, teacher)  # N, S, T
        self._keep_attention(attn, kept)
        dist = self.pair_distances(student, teacher).transpose(1, 2)  # N, S, T
        loss = (attn * dist).sum(dim=(1, 2)).mean()  # dropped keys: attention exactly 0
        if self.normalize == 'teacher_layers':
            # Mass S -> T: AFD's scale, so AFD's loss weights mean the same here.
            loss = loss * (attn.shape[2] / attn.shape[1])
        return {self.loss_name: loss, 'kept_keys': (attn > 0).float().sum(2).mean().detach()}


@MODELS.register_module()
class AT(LevelwiseMethod):
    """Attention transfer: ``mean((a(f_s) - a(f_t))^2)`` per pair of maps, summed over the
    pairs, ``a(f) = normalise(flatten(mean_c f^p))`` (module docstring).

    Args:
        p (float): the power of the activations. Default 2 (the authors'). As the authors,
            ``f^p`` is not an absolute value: use an even p on features that can be negative.
        share_levels, level_reduction: see :class:`LevelwiseMethod` (levels: pairs, summed).

    References:
        Paper: Zagoruyko, Komodakis, "Paying More Attention to Attention: Improving the
            Performance of Convolutional Neural Networks via Attention Transfer", ICLR 2017
            (arXiv 1612.03928).
        Code: the authors', https://github.com/szagoruyko/attention-transfer; the CIFAR
            settings used here: megvii-research/mdistiller ``distillers/AT.py``.

    Block: ``student=['backbone.layer1', 'backbone.layer2', 'backbone.layer3']`` and the same
    teacher stages (any channel counts; of two maps of other sizes, the larger is pooled to
    the smaller, which must be no larger in either dimension). Returns ``loss_at``.
    """

    def __init__(self, p: PositiveFloat = 2.0, **kwargs):
        super().__init__(**kwargs)
        self.p = p

    def build_level(self, student, teacher):
        if student.dim() != 4 or teacher.dim() != 4:
            raise ValueError(f'AT needs feature maps (N, C, H, W); got student '
                             f'{tuple(student.shape)} and teacher {tuple(teacher.shape)}.')
        self.common_size(student, teacher)  # fails now on maps that cannot be compared
        return None

    @staticmethod
    def common_size(student: torch.Tensor, teacher: torch.Tensor):
        """The (H, W) both maps are compared at: the smaller map's, when it is no larger
        than the other in either dimension (the larger is average-pooled to it).

        Shapes, not areas: maps of one area and another shape (4x16 and 8x8) flatten to
        vectors of one length whose positions are different places of the image, so comparing
        them position by position would be silently wrong; maps larger in one dimension and
        smaller in the other have no common grid to pool to. Both are refused.
        """
        (hs, ws), (ht, wt) = student.shape[2:], teacher.shape[2:]
        if hs <= ht and ws <= wt:
            return hs, ws
        if ht <= hs and wt <= ws:
            return ht, wt
        raise ValueError(
            f'AT compares spatial attention maps position by position, so one map must be no '
            f'larger than the other in both height and width (the larger is average-pooled to '
            f'it); got student {tuple(student.shape)} and teacher {tuple(teacher.shape)} '
            f'({hs}x{ws} against {ht}x{wt}). Record student and teacher points whose maps '
            f'have the same aspect ratio (e.g. the same stage of both networks).')

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x.float().pow(self.p).mean(dim=1).flatten(1), dim=1)

    def level_loss(self, student, teacher, connector, data_samples=None
                   ) -> Dict[str, torch.Tensor]:
        teacher = teacher.detach()
        if student.numel() == 0 or teacher.numel() == 0:
            return dict(loss_at=student.sum() * 0)
        size = self.common_size(student, teacher)
        if tuple(student.shape[2:]) != size:
            student = F.adaptive_avg_pool2d(student, size)
        if tuple(teacher.shape[2:]) != size:
            teacher = F.adaptive_avg_pool2d(teacher, size)
        return dict(loss_at=(self.attention(student) - self.attention(teacher)).pow(2).mean())
