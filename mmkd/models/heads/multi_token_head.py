"""One linear classifier per extra token of a ViT (class, distillation, ... tokens).

The heads of the VkD DeiT student (roymiles/vkd ``models/deit.py``: ``head`` on the class
token, ``head_dist`` on the distillation token; in training the class head takes the
cross-entropy and the distillation head the KL to the teacher; at test time the two logits are
averaged) and of Co-advise's three-token CiVT (three heads, averaged).
"""
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmpretrain.evaluation.metrics import Accuracy
from mmpretrain.models.heads import ClsHead
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample


def token_weights(weights: Mapping[str, float], tokens: Sequence[str], what: str
                  ) -> Dict[str, float]:
    """``{token: float weight}``, each a known token and >= 0, else an error naming ``what``."""
    unknown = [k for k in weights if k not in tokens]
    if unknown:
        raise ValueError(f'{what}: {unknown} are not tokens; choose from {list(tokens)}')
    out = {k: float(v) for k, v in weights.items()}
    if any(v < 0 for v in out.values()):
        raise ValueError(f'{what} must be >= 0, got {out}')
    return out


@MODELS.register_module()
class MultiTokenClsHead(ClsHead):
    """Linear classifiers ``heads.<token>`` on the extra tokens of a ``StemTokenViT``.

    Input: the backbone's tuple; the last element (N, T, D) holds the T extra tokens in
    ``tokens`` order (``StemTokenViT(out_type='extra_tokens')``). Each token t gets
    ``heads.<t>``: Linear(D, num_classes), so a distiller can record ``head.heads.dist``.

    - ``forward`` / ``predict`` (and the classifier's 'tensor' mode): the weighted average of
      the heads' logits, ``sum_t w_t * logits_t / sum_t w_t`` over ``predict_weights``
      (default: every token, equal weights: the authors' test-time average). (N, num_classes).
    - ``loss``: every head runs (so recorders see all of them); the head's ``loss`` (CE or
      label smoothing; Mixup / CutMix soft targets accepted) is applied to each token in
      ``loss_weights``, logged as ``loss_<token>`` times its weight. Tokens without a loss
      here must get one elsewhere (e.g. a distiller's KD block), or their head is unused.

    Args:
        num_classes (int): classes.
        in_channels (int): D, the token width.
        tokens (sequence of str): names of the backbone's extra tokens, in its order.
            Default ('cls', 'dist').
        loss_weights (dict): token -> weight of the head's loss on it. Default
            ``dict(cls=1.0)``: the authors' VkD student, whose distillation head is trained by
            the KD loss only.
        predict_weights (dict, optional): token -> weight in the test-time average. Default
            None: all tokens equally (authors: ``(x + x_dist) / 2``).
        loss, topk, cal_acc: as ``ClsHead`` (``cal_acc`` uses the averaged logits).
        init_cfg: Default trunc-normal std 0.02, zero bias (timm's init of the authors'
            ``head`` / ``head_dist``).
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 tokens: Sequence[str] = ('cls', 'dist'),
                 loss_weights: Mapping[str, float] = dict(cls=1.0),
                 predict_weights: Optional[Mapping[str, float]] = None,
                 loss: dict = dict(type='CrossEntropyLoss', loss_weight=1.0),
                 topk: Tuple[int, ...] = (1, ),
                 cal_acc: bool = False,
                 init_cfg: Optional[dict] = dict(type='TruncNormal', layer='Linear',
                                                 std=0.02, bias=0.),
                 **kwargs):
        super().__init__(loss=loss, topk=topk, cal_acc=cal_acc, init_cfg=init_cfg, **kwargs)
        self.num_classes, self.in_channels = num_classes, in_channels
        self.tokens = tuple(tokens)
        if not self.tokens or len(set(self.tokens)) != len(self.tokens):
            raise ValueError(f'MultiTokenClsHead tokens must be unique names, got {tokens!r}')
        self.loss_weights = self._weights(loss_weights, 'loss_weights')
        if not self.loss_weights:
            raise ValueError('MultiTokenClsHead loss_weights names no token; give at least '
                             f'one of {list(self.tokens)}')
        self.predict_weights = self._weights(
            predict_weights if predict_weights is not None else dict.fromkeys(self.tokens, 1.),
            'predict_weights')
        if sum(self.predict_weights.values()) <= 0:
            raise ValueError(f'MultiTokenClsHead predict_weights must sum to more than 0, '
                             f'got {predict_weights!r}')
        self.heads = nn.ModuleDict(
            {t: nn.Linear(in_channels, num_classes) for t in self.tokens})

    def _weights(self, weights: Mapping[str, float], arg: str) -> Dict[str, float]:
        return token_weights(weights, self.tokens, f'{type(self).__name__} {arg}')

    def pre_logits(self, feats: Tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The last backbone output, (N, T, D)."""
        x = feats[-1]
        if x.dim() != 3 or x.shape[1] != len(self.tokens):
            raise ValueError(
                f'MultiTokenClsHead expects (N, {len(self.tokens)}, D) extra tokens '
                f'{list(self.tokens)} (StemTokenViT out_type="extra_tokens"), got '
                f'{tuple(x.shape)}')
        return x

    def forward_tokens(self, feats: Tuple[torch.Tensor, ...]) -> Dict[str, torch.Tensor]:
        """Every token's logits: token -> (N, num_classes)."""
        x = self.pre_logits(feats)
        return {t: self.heads[t](x[:, i]) for i, t in enumerate(self.tokens)}

    def combine(self, logits: Dict[str, torch.Tensor]) -> torch.Tensor:
        """``sum_t w_t logits_t / sum_t w_t`` over ``predict_weights``: (N, num_classes)."""
        total = sum(self.predict_weights.values())
        out = None
        for t, w in self.predict_weights.items():
            term = logits[t] * (w / total)
            out = term if out is None else out + term
        return out

    def forward(self, feats: Tuple[torch.Tensor, ...]) -> torch.Tensor:
        """(N, T, D) tokens -> averaged logits (N, num_classes)."""
        return self.combine(self.forward_tokens(feats))

    def loss(self, feats: Tuple[torch.Tensor, ...], data_samples: List[DataSample],
             **kwargs) -> Dict[str, torch.Tensor]:
        """``{'loss_<t>': w_t * loss(logits_t, target)}`` for t in ``loss_weights``."""
        logits = self.forward_tokens(feats)
        if 'gt_score' in data_samples[0]:
            target = torch.stack([s.gt_score for s in data_samples])
        else:
            target = torch.cat([s.gt_label for s in data_samples])
        losses = {}
        for t, w in self.loss_weights.items():
            losses[f'loss_{t}'] = w * self.loss_module(
                logits[t], target, avg_factor=logits[t].size(0), **kwargs)
        if self.cal_acc:
            if target.ndim != 1:
                raise ValueError('MultiTokenClsHead cal_acc needs hard labels; batch '
                                 'augmentations (Mixup, CutMix) give soft ones')
            acc = Accuracy.calculate(self.combine(logits), target, topk=self.topk)
            losses.update({f'accuracy_top-{k}': a for k, a in zip(self.topk, acc)})
        return losses
