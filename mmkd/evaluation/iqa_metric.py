"""Image-quality metrics: Spearman's rank (SRCC) and Pearson's linear (PLCC) correlation.

The two numbers every IQA paper reports, between predicted and ground-truth quality over the
whole test set, computed with ``scipy.stats.spearmanr`` / ``pearsonr``. PLCC is taken on the
raw predictions: the papers of this line (HyperIQA, TReS, RKIQT) report it without the
four-parameter logistic fit of the VQEG protocol; ``logistic_plcc=True`` adds that fitted
variant (``scipy.optimize.curve_fit``) as ``plcc_logistic``.
"""
from typing import List, Optional, Sequence

import numpy as np
import torch
from mmengine.evaluator import BaseMetric

from mmkd.registry import METRICS


def _quality(sample, key: str) -> float:
    value = sample[key] if isinstance(sample, dict) else getattr(sample, key)
    value = torch.as_tensor(value).detach().float().reshape(-1)
    if value.numel() != 1:
        raise ValueError(f'IQAMetric: {key} must hold one quality score per image, got '
                         f'{value.numel()} values.')
    return float(value[0])


def logistic_4(x, b1, b2, b3, b4):
    """VQEG's monotonic logistic, (b1 - b2) / (1 + exp(-(x - b3) / |b4|)) + b2."""
    return (b1 - b2) / (1 + np.exp(-(x - b3) / (np.abs(b4) + 1e-12))) + b2


def srcc_plcc(pred: Sequence[float], gt: Sequence[float], logistic: bool = False) -> dict:
    """SRCC and PLCC of two equally long score lists (scipy). Fewer than two images, or a
    constant list, has no correlation: ``nan``, and the caller is told rather than given 0."""
    from scipy import stats
    pred, gt = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    if pred.shape != gt.shape:
        raise ValueError(f'srcc_plcc: {pred.shape} predictions vs {gt.shape} labels')
    if len(pred) < 2 or np.ptp(pred) == 0 or np.ptp(gt) == 0 or \
            not (np.isfinite(pred).all() and np.isfinite(gt).all()):
        out = dict(srcc=float('nan'), plcc=float('nan'))
    else:
        out = dict(srcc=float(stats.spearmanr(pred, gt)[0]),
                   plcc=float(stats.pearsonr(pred, gt)[0]))
    if logistic:
        out['plcc_logistic'] = float('nan')
        if np.isfinite(out['plcc']) and len(pred) >= 5:
            from scipy.optimize import curve_fit
            p0 = [gt.max(), gt.min(), float(np.mean(pred)), float(np.std(pred)) or 1.0]
            try:
                params, _ = curve_fit(logistic_4, pred, gt, p0=p0, maxfev=10000)
                out['plcc_logistic'] = float(stats.pearsonr(logistic_4(pred, *params), gt)[0])
            except RuntimeError:  # no fit found: reported as nan, never as a number
                pass
    return out


@METRICS.register_module()
class IQAMetric(BaseMetric):
    """SRCC and PLCC (x 1, in [-1, 1]) between ``pred_score`` and ``gt_score`` of each data
    sample (one value per image, (1,) tensors as :class:`~mmkd.models.QualityRegressionHead`
    and the IQA datasets set them). Logged as ``iqa/srcc`` and ``iqa/plcc``.

    Args:
        pred_key / gt_key (str): data-sample fields. Defaults 'pred_score' / 'gt_score'.
        logistic_plcc (bool): also ``iqa/plcc_logistic`` (VQEG's 4-parameter fit). Default
            False.
        collect_device, prefix: as MMEngine's ``BaseMetric``; prefix default 'iqa'.
    """
    default_prefix = 'iqa'

    def __init__(self, pred_key: str = 'pred_score', gt_key: str = 'gt_score',
                 logistic_plcc: bool = False, collect_device: str = 'cpu',
                 prefix: Optional[str] = None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.pred_key, self.gt_key, self.logistic_plcc = pred_key, gt_key, logistic_plcc

    def process(self, data_batch, data_samples: Sequence) -> None:
        for sample in data_samples:
            self.results.append((_quality(sample, self.pred_key),
                                 _quality(sample, self.gt_key)))

    def compute_metrics(self, results: List) -> dict:
        pred, gt = zip(*results) if results else ((), ())
        out = srcc_plcc(pred, gt, self.logistic_plcc)
        if not np.isfinite(out['srcc']):
            from mmengine.logging import print_log
            print_log(f'IQAMetric: no correlation over {len(results)} images (fewer than two, '
                      'constant or non-finite scores): SRCC / PLCC are nan.',
                      logger='current', level=30)
        return out
