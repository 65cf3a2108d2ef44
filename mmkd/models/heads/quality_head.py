"""A quality-regression head for image-quality assessment (IQA) on mmpretrain's classifier.

No OpenMMLab package does IQA; with this head, an mmpretrain ``ImageClassifier`` (any backbone
and neck) predicts one quality score per image, trained against the dataset's normalised
MOS / DMOS in ``gt_score`` ((1,) per sample, in [0, 1], higher = better: see
:mod:`mmkd.datasets.iqa`) and scored by :class:`~mmkd.evaluation.IQAMetric`.

Data flow, N images::

    feats[-1]  (N, D)       one vector (a CNN after GlobalAveragePooling, a ViT's class token)
           or  (N, T, D)    T extra tokens of a StemTokenViT (``tokens`` given)
      -> heads.<t>: Linear(D, 1)  [or Linear(D, H) - ReLU - Linear(H, 1)]   (N,) per token
      -> loss:    sum_t w_t * L1 / MSE(q_t, gt)       (``loss_weights``)
         predict: sum_t v_t q_t / sum_t v_t  -> data_sample.pred_score (1,)  (``predict_weights``)

The per-token form is the IQA counterpart of :class:`MultiTokenClsHead`: the class token's
head learns from the labels, and the conv / inv tokens' heads can be left to a distiller's
blocks (a CNN and an involution IQA teacher's predictions), each reachable as
``head.heads.<t>`` for a recorder.
"""
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from .multi_token_head import token_weights

LOSSES = ('l1', 'mse', 'smooth_l1')


@MODELS.register_module()
class QualityRegressionHead(BaseModule):
    """One quality score per image (or per extra token), regressed to ``gt_score``.

    Args:
        in_channels (int): D.
        tokens (sequence of str, optional): names of the backbone's extra tokens (input
            (N, T, D), ``StemTokenViT(out_type='extra_tokens')``). Default None: one input
            vector (N, D) and one head named ``'cls'``.
        hidden_channels (int, optional): H of a two-layer MLP per head. Default None: linear.
        loss (str): 'l1' (default: the usual choice of NR-IQA training, e.g. HyperIQA; RKIQT
            does not state its regression loss), 'mse' or 'smooth_l1'.
        loss_weights (dict, optional): token -> weight of the regression loss on its head.
            Default ``{'cls': 1.0}``.
        predict_weights (dict, optional): token -> weight in the test-time average. Default
            None: every token, equal weights.
        init_cfg: Default trunc-normal std 0.02, zero bias on the linears.
    """

    def __init__(self, in_channels: int, tokens: Optional[Sequence[str]] = None,
                 hidden_channels: Optional[int] = None, loss: str = 'l1',
                 loss_weights: Optional[Mapping[str, float]] = None,
                 predict_weights: Optional[Mapping[str, float]] = None,
                 init_cfg: Optional[dict] = dict(type='TruncNormal', layer='Linear', std=0.02,
                                                 bias=0.)):
        super().__init__(init_cfg=init_cfg)
        if loss not in LOSSES:
            raise ValueError(f'QualityRegressionHead: loss {loss!r} is not one of {LOSSES}')
        self.single = tokens is None
        self.tokens = ('cls', ) if tokens is None else tuple(tokens)
        if not self.tokens or len(set(self.tokens)) != len(self.tokens):
            raise ValueError(f'QualityRegressionHead tokens must be unique names, got {tokens!r}')
        self.loss_type = loss
        self.loss_weights = self._weights(loss_weights or {'cls': 1.0}, 'loss_weights')
        self.predict_weights = self._weights(
            predict_weights if predict_weights is not None else dict.fromkeys(self.tokens, 1.),
            'predict_weights')
        if sum(self.predict_weights.values()) <= 0:
            raise ValueError('QualityRegressionHead predict_weights must sum to more than 0, '
                             f'got {predict_weights!r}')

        def head():
            if hidden_channels is None:
                return nn.Linear(in_channels, 1)
            return nn.Sequential(nn.Linear(in_channels, hidden_channels), nn.ReLU(inplace=True),
                                 nn.Linear(hidden_channels, 1))

        self.heads = nn.ModuleDict({t: head() for t in self.tokens})

    def _weights(self, weights: Mapping[str, float], arg: str) -> Dict[str, float]:
        return token_weights(weights, self.tokens, f'QualityRegressionHead {arg}')

    def pre_logits(self, feats: Tuple[torch.Tensor, ...]) -> torch.Tensor:
        x = feats[-1] if isinstance(feats, (tuple, list)) else feats
        want = '(N, D)' if self.single else f'(N, {len(self.tokens)}, D)'
        ok = x.dim() == 2 if self.single else (x.dim() == 3 and x.shape[1] == len(self.tokens))
        if not ok:
            raise ValueError(f'QualityRegressionHead expects {want} features (tokens '
                             f'{None if self.single else list(self.tokens)}), got '
                             f'{tuple(x.shape)}')
        return x

    def forward_tokens(self, feats) -> Dict[str, torch.Tensor]:
        """token -> (N, 1) predicted quality."""
        x = self.pre_logits(feats)
        if self.single:
            return {'cls': self.heads['cls'](x)}
        return {t: self.heads[t](x[:, i]) for i, t in enumerate(self.tokens)}

    def combine(self, scores: Dict[str, torch.Tensor]) -> torch.Tensor:
        total = sum(self.predict_weights.values())
        return sum(scores[t] * (w / total) for t, w in self.predict_weights.items())

    def forward(self, feats) -> torch.Tensor:
        """(N, 1): the weighted average of the heads."""
        return self.combine(self.forward_tokens(feats))

    @staticmethod
    def targets(data_samples: List[DataSample]) -> torch.Tensor:
        """(N, 1) ground-truth quality from each sample's (1,) ``gt_score``."""
        missing = [i for i, s in enumerate(data_samples) if 'gt_score' not in s]
        if missing:
            raise KeyError(f'QualityRegressionHead: data samples {missing} have no gt_score '
                           '(an IQA dataset sets it; PackInputs packs it)')
        return torch.stack([s.gt_score.float().reshape(1) for s in data_samples])

    def regression(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        fn = dict(l1=F.l1_loss, mse=F.mse_loss, smooth_l1=F.smooth_l1_loss)[self.loss_type]
        return fn(pred, target.to(pred))

    def loss(self, feats, data_samples: List[DataSample], **kwargs) -> Dict[str, torch.Tensor]:
        """``{'loss_<t>': w_t * L(q_t, gt)}`` for t in ``loss_weights`` (every head runs)."""
        scores = self.forward_tokens(feats)
        target = self.targets(data_samples)
        return {f'loss_{t}' if not self.single else 'loss': w * self.regression(scores[t], target)
                for t, w in self.loss_weights.items()}

    def predict(self, feats, data_samples: Optional[List[DataSample]] = None
                ) -> List[DataSample]:
        """Each sample gets ``pred_score`` (1,): the combined prediction."""
        pred = self(feats).detach()
        if data_samples is None:
            data_samples = [DataSample() for _ in range(pred.size(0))]
        for sample, q in zip(data_samples, pred):
            sample.set_field(q.reshape(1), 'pred_score', dtype=torch.Tensor)
        return data_samples
