"""How much a student agrees with each of its teachers: an MMEngine metric, per task.

Stanton et al. ("Does Knowledge Distillation Really Work?", NeurIPS 2021) separate what a
student *scores* (accuracy) from how faithfully it *matches* its teacher (fidelity: top-1
agreement, predictive KL); a student can gain one and not the other. This metric reports both,
with the calibration of each model, beside the task's own metric::

    val_evaluator = [dict(type='Accuracy', topk=(1, )),
                     dict(type='mmkd.TeacherStudentAgreement')]
    model = dict(val_teachers=True)  # the distiller also runs its teachers when testing

Every number is a fraction (not %) or a divergence in nats; the keys, with MMEngine's prefix
``agreement``, are listed in :class:`TeacherStudentAgreement`.
"""
import copy
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from mmkd.registry import METRICS

KINDS = ('cls', 'seg', 'det')
#: Probabilities are clamped to this before a log (classification scores, box scores): a
#: float32 softmax gives no non-zero probability below ~1e-45, so the clamp only acts on exact
#: zeros (an underflowed class, an unmatched box) and bounds one log-ratio by
#: log(1 / 1e-12) = 27.6 nats instead of making it infinite.
EPS = 1e-12


# ------------------------------------------------------------------ data-sample access
def _get(sample, key: str, default=None):
    """A field of a data sample or of its ``to_dict()`` (MMEngine's evaluator converts)."""
    if isinstance(sample, dict):
        return sample.get(key, default)
    return getattr(sample, key, default) if key in sample else default


def _tensor(value) -> Optional[torch.Tensor]:
    """The tensor of a field: a tensor, a PixelData / LabelData (``.data``) or its dict."""
    if value is None:
        return None
    if isinstance(value, dict):
        value = value.get('data')
    elif not isinstance(value, (torch.Tensor, np.ndarray, list, tuple, int, float)):
        value = getattr(value, 'data', None)
    return None if value is None else torch.as_tensor(value).detach().cpu()


def sample_kind(sample) -> Optional[str]:
    """'det' (``pred_instances``), 'seg' (``seg_logits``) or 'cls' (``pred_score``)."""
    if _get(sample, 'pred_instances') is not None:
        return 'det'
    if _get(sample, 'seg_logits') is not None:
        return 'seg'
    if _get(sample, 'pred_score') is not None:
        return 'cls'
    return None


# ------------------------------------------------------------------ formulas
def ece_bins(conf: torch.Tensor, correct: torch.Tensor, num_bins: int) -> np.ndarray:
    """Per-bin sums for the expected calibration error: a (3, num_bins) array of counts,
    summed confidence and summed correctness. Bins are Guo et al.'s (ICML 2017) equal-width
    ``((m - 1) / M, m / M]``, m = 1..M (a confidence of exactly 0 goes to the first)."""
    conf = conf.double().reshape(-1)
    idx = (torch.ceil(conf * num_bins).long() - 1).clamp(0, num_bins - 1)
    out = torch.zeros(3, num_bins, dtype=torch.float64)
    out[0].index_add_(0, idx, torch.ones_like(conf))
    out[1].index_add_(0, idx, conf)
    out[2].index_add_(0, idx, correct.double().reshape(-1))
    return out.numpy()


def ece_from_bins(bins: np.ndarray) -> float:
    """ECE = sum_m |B_m| / n * |acc(B_m) - conf(B_m)| = sum_m |sum correct - sum conf| / n
    (nan with no sample)."""
    n = bins[0].sum()
    return float(np.abs(bins[2] - bins[1]).sum() / n) if n > 0 else float('nan')


def divergences(p_t: torch.Tensor, logp_t: torch.Tensor, p_s: torch.Tensor,
                logp_s: torch.Tensor) -> Dict[str, torch.Tensor]:
    """Per row of (N, C) distributions (float64): top-1 agreement, KL and Jensen-Shannon.

    - ``agree`` = [argmax_c p_t == argmax_c p_s] (ties: the first index, as ``argmax``);
    - ``kl`` = KL(p_t || p_s) = sum_c p_t (log p_t - log p_s), a term with p_t = 0 being 0;
    - ``js`` = JS(p_t, p_s) = KL(p_t || m) / 2 + KL(p_s || m) / 2 with m = (p_t + p_s) / 2,
      computed as H(m) - (H(p_t) + H(p_s)) / 2 with 0 log 0 = 0 (natural log: in [0, ln 2]).
    """
    m = (p_t + p_s) / 2
    neg_h = (torch.xlogy(p_t, p_t) + torch.xlogy(p_s, p_s)) / 2
    return dict(agree=(p_t.argmax(1) == p_s.argmax(1)).double(),
                kl=(p_t * (logp_t - logp_s)).sum(1),
                js=(neg_h - torch.xlogy(m, m)).sum(1).clamp_min(0))


def bernoulli_kl(a: torch.Tensor, b: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """KL(Bern(a) || Bern(b)) = a log(a / b) + (1 - a) log((1 - a) / (1 - b)), both scores
    clamped to [eps, 1 - eps]."""
    a = a.double().clamp(eps, 1 - eps)
    b = b.double().clamp(eps, 1 - eps)
    return a * (a.log() - b.log()) + (1 - a) * ((1 - a).log() - (1 - b).log())


def match_boxes(ref_boxes, ref_scores, cand_boxes, iou_thr: float,
                ref_labels=None, cand_labels=None) -> torch.Tensor:
    """Greedy one-to-one matching: the reference boxes in decreasing score order (stable),
    each to the still unmatched candidate of highest IoU >= ``iou_thr`` (with labels given,
    of the same label only; IoU ties: the first candidate). Returns, per reference box in
    its given order, the index of its candidate or -1."""
    n = len(ref_boxes)
    out = torch.full((n, ), -1, dtype=torch.long)
    if n == 0 or len(cand_boxes) == 0:
        return out
    from mmdet.structures.bbox import bbox_overlaps
    iou = bbox_overlaps(ref_boxes.double(), cand_boxes.double())  # (n, m)
    if ref_labels is not None:
        iou = torch.where(ref_labels.reshape(-1, 1) == cand_labels.reshape(1, -1), iou,
                          torch.full_like(iou, -1.0))
    taken = torch.zeros(len(cand_boxes), dtype=torch.bool)
    for i in torch.argsort(-ref_scores.double(), stable=True).tolist():
        row = iou[i].masked_fill(taken, -1.0)
        j = int(row.argmax())
        if row[j] >= iou_thr:
            out[i] = j
            taken[j] = True
    return out


# ------------------------------------------------------------------ the metric
@METRICS.register_module()
class TeacherStudentAgreement(BaseMetric):
    """Fidelity of the student to each teacher, and the calibration of both (Stanton et al.,
    NeurIPS 2021), for classification, semantic segmentation and detection.

    **Where the teachers' predictions come from.** (a) A distiller built with
    ``val_teachers=True`` (or a list of teacher names) runs its teachers when the student is
    tested and puts ``teacher_predictions = {name: teacher's output data sample}`` on each
    output data sample of the student; ``teachers=None`` uses all of them, ``teachers=[names]``
    those. (b) ``teachers=dict(name=dict(config=..., checkpoint=..., [scope, revise_keys]))``
    for a model under test that is not a distiller (an extracted student): the metric builds
    each teacher once, at its first batch, as the distiller does (in its own package scope,
    without pretrained downloads, the checkpoint loaded strictly and safely: missing, corrupt,
    mis-shaped or non-finite weights are errors naming the teacher), puts it on the current
    device in eval mode, and runs its config's ``data_preprocessor`` (it must declare one) on
    the evaluator's ``data_batch`` and its ``predict`` on that: the teacher sees the image as it
    was trained to, from the same loaded data as the student. With (b) the samples'
    ``teacher_predictions`` are not read. With neither: an error saying what to set.

    A teacher whose prediction is of another kind than the student's (a detection teacher of
    a segmentation student) is skipped, with one logged message.

    **Classification** (``pred_score``: (C,) softmax probabilities; ``gt_label``), per image,
    averaged over images:

    - ``<t>/top1``: top-1 agreement, [argmax p_t == argmax p_s];
    - ``<t>/kl``: predictive KL(p_t || p_s) = sum_c p_t log(p_t / p_s), both probabilities
      clamped to >= :data:`EPS` = 1e-12 before the log (acts on exact zeros only), in nats;
    - ``<t>/js``: Jensen-Shannon divergence (natural log, in [0, ln 2]);
    - ``<t>/teacher_acc``, ``student_acc``: top-1 accuracy of each against ``gt_label``;
    - ``<t>/teacher_ece``, ``student_ece``: expected calibration error (Guo et al., ICML
      2017), confidence = max_c p, ``num_bins`` equal-width bins ``((m-1)/M, m/M]``,
      ECE = sum_m |B_m| / n |acc(B_m) - conf(B_m)|.

    **Segmentation** (mmseg ``seg_logits``: (C, H, W) logits at the original image size, as
    ``EncoderDecoder.predict`` returns them; ``gt_sem_seg``): the same five numbers per pixel,
    p = softmax over C (one channel: a sigmoid, p = (1 - sigmoid, sigmoid), mmseg's binary
    head), pixels whose ground truth is ``ignore_index`` excluded, summed over every pixel of
    the set and divided by their count (images with more valid pixels weigh more, as mIoU's
    pixel counts do). Teacher and student logits must have the same size. Computed in
    float64: H x W x C x 8 bytes per model and image (a 512 x 1024 Cityscapes image of 19
    classes: 80 MB).

    **Detection** (mmdet ``pred_instances``: ``bboxes`` (N, 4) x1y1x2y2 in the original image,
    ``scores``, ``labels``; ``gt_instances``): the boxes kept are those with score >=
    ``score_thr`` (teacher and student alike). Per image, the teacher's boxes in decreasing
    score order are each matched to the still unmatched student box (of any class) of highest
    IoU >= ``iou_thr`` (mmdet's ``bbox_overlaps``):

    - ``<t>/box_recall``: matched teacher boxes / teacher boxes (over the set);
    - ``<t>/class_agree``: matched pairs with the same label / matched pairs;
    - ``<t>/score_kl``: mean over teacher boxes of the Bernoulli KL(s_t || s_s), s_s the
      matched student box's score, an unmatched teacher box compared with s_s = 0; both
      clamped to [EPS, 1 - EPS] (so a missed confident box costs up to ~27.6 nats);
    - ``<t>/teacher_dece``, ``student_dece``: detection ECE (Kueppers et al., CVPR-W 2020,
      confidence only): the kept detections binned by score (``num_bins`` as above),
      D-ECE = sum_m |B_m| / n |prec(B_m) - conf(B_m)|, a detection being correct when
      matched to a ground-truth box of its class at IoU >= 0.5 (greedy one-to-one by score,
      duplicates wrong, as COCO matches; ground-truth boxes with ``ignore_flags`` set are
      left out; mmdet's ``ignored_instances`` (crowd boxes) are not read, so a detection on
      one counts as wrong).

    A quantity with nothing to average (no teacher box, no matched pair) is nan.

    Args:
        teachers (None | list[str] | dict): which teachers (see above). Default None: every
            teacher whose predictions the distiller puts on the samples.
        num_bins (int): confidence bins of the ECE / D-ECE. Default 15, Guo et al.'s.
        ignore_index (int): segmentation label excluded. Default 255, mmseg's.
        score_thr (float): detection score kept, in [0, 1). Default 0.3, the confidence
            threshold of Kueppers et al.'s D-ECE experiments: it keeps the detections one
            would show and drops the many near-zero-score boxes a dense detector's test_cfg
            keeps (RetinaNet's: score > 0.05, up to 100 per image), which would otherwise
            dominate the box counts and the low calibration bins.
        iou_thr (float): IoU of a teacher-student box match, in (0, 1]. Default 0.5, the
            PASCAL / COCO AP50 criterion.
        collect_device, prefix: as MMEngine's ``BaseMetric``; prefix default 'agreement'.
    """
    default_prefix = 'agreement'

    def __init__(self, teachers: Union[None, Sequence[str], Dict[str, dict]] = None,
                 num_bins: int = 15, ignore_index: int = 255, score_thr: float = 0.3,
                 iou_thr: float = 0.5, collect_device: str = 'cpu',
                 prefix: Optional[str] = None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        if isinstance(teachers, str):
            teachers = [teachers]
        if teachers is not None and not isinstance(teachers, (list, tuple, dict)):
            raise TypeError('TeacherStudentAgreement: teachers must be None (all of the '
                            "distiller's), a list of teacher names, or a dict name -> "
                            f'dict(config=..., checkpoint=...), got {teachers!r}.')
        if isinstance(teachers, dict):
            for name, cfg in teachers.items():
                if not isinstance(cfg, dict) or 'checkpoint' not in cfg or \
                        ('config' in cfg) == ('model' in cfg):
                    raise KeyError(f'TeacherStudentAgreement: teachers.{name} must be '
                                   'dict(config=<path> or model=<dict>, checkpoint=<path or '
                                   f'url>), got {cfg!r}.')
                unknown = set(cfg) - {'config', 'model', 'checkpoint', 'scope', 'revise_keys'}
                if unknown:
                    raise KeyError(f'TeacherStudentAgreement: teachers.{name}: unknown keys '
                                   f'{sorted(unknown)}; valid keys are config/model, '
                                   'checkpoint, scope, revise_keys.')
        if not isinstance(num_bins, int) or isinstance(num_bins, bool) or num_bins < 1:
            raise ValueError(f'TeacherStudentAgreement: num_bins must be an integer >= 1, got '
                             f'{num_bins!r}.')
        if not 0 <= score_thr < 1:
            raise ValueError(f'TeacherStudentAgreement: score_thr must be in [0, 1), got '
                             f'{score_thr!r}.')
        if not 0 < iou_thr <= 1:
            raise ValueError(f'TeacherStudentAgreement: iou_thr must be in (0, 1], got '
                             f'{iou_thr!r}.')
        self.teachers = copy.deepcopy(teachers)
        self.num_bins, self.ignore_index = num_bins, ignore_index
        self.score_thr, self.iou_thr = float(score_thr), float(iou_thr)
        self._models = None  # the metric's own teachers, built at the first batch
        self._skipped = set()

    # -------------------------------------------------------------- own teachers
    def _build_teachers(self) -> dict:
        from mmkd.distillers.model_builder import (build_model_in_scope, infer_model_scope,
                                                   load_checkpoint_strict, load_model_config,
                                                   without_pretrained)
        from mmkd.distillers.teachers import check_revise_keys
        from mmengine.device import get_device
        models = {}
        for name, spec in self.teachers.items():
            where = f'TeacherStudentAgreement teachers.{name}'
            source = spec.get('config', spec.get('model'))
            cfg, file_scope = load_model_config(source)
            if cfg.get('data_preprocessor') is None:
                raise KeyError(f'{where}: its config declares no data_preprocessor (in the '
                               'model or at top level), so the metric cannot tell how the '
                               'teacher normalises its images.')
            cfg = without_pretrained(cfg)
            scope = infer_model_scope(cfg, spec.get('scope') or file_scope)
            model = build_model_in_scope(cfg, scope)
            revise = check_revise_keys(spec.get('revise_keys', ()), where, where)
            label = source if isinstance(source, str) else cfg.get('type')
            load_checkpoint_strict(model, spec['checkpoint'], f'teacher {name!r} ({label})',
                                   revise_keys=revise)
            models[name] = model.to(get_device()).eval().requires_grad_(False)
        return models

    def _own_predictions(self, data_batch) -> Dict[str, list]:
        if self._models is None:
            self._models = self._build_teachers()
        if not isinstance(data_batch, dict) or 'inputs' not in data_batch:
            raise TypeError('TeacherStudentAgreement: with teachers=dict(...) the metric runs '
                            "them on the evaluator's data_batch, a dict with 'inputs'; got "
                            f'{type(data_batch).__name__}.')
        out = {}
        with torch.no_grad():
            for name, model in self._models.items():
                # OpenMMLab models write their predictions into the samples they are given
                # (some preprocessors pass them through): each teacher gets copies.
                data = dict(data_batch)
                if data.get('data_samples') is not None:
                    data['data_samples'] = [s.clone() for s in data['data_samples']]
                data = model.data_preprocessor(data, False)
                out[name] = model(data['inputs'], data['data_samples'], mode='predict')
        return out

    # -------------------------------------------------------------- process
    def _selected(self, sample, index: int, own) -> dict:
        if own is not None:
            return {name: preds[index] for name, preds in own.items()}
        preds = _get(sample, 'teacher_predictions')
        if preds is None:
            raise RuntimeError(
                'TeacherStudentAgreement: the data samples carry no teacher predictions. Set '
                '`model.val_teachers=True` in the distiller config (the distiller then runs '
                'its teachers when testing), or give the metric its teachers: '
                'teachers=dict(name=dict(config=..., checkpoint=...)).')
        if self.teachers is None:
            return dict(preds)
        missing = [n for n in self.teachers if n not in preds]
        if missing:
            raise KeyError(f'TeacherStudentAgreement: teachers {missing} have no predictions '
                           f'on the samples; those are {sorted(preds)} (the distiller\'s '
                           '`val_teachers` chooses which).')
        return {n: preds[n] for n in self.teachers}

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        own = self._own_predictions(data_batch) if isinstance(self.teachers, dict) else None
        for index, sample in enumerate(data_samples):
            kind = sample_kind(sample)
            if kind is None:
                raise KeyError('TeacherStudentAgreement: a student prediction has none of '
                               'pred_score (classification), seg_logits (segmentation), '
                               'pred_instances (detection).')
            result = dict(kind=kind, teachers={})
            kept = {}
            for name, pred in self._selected(sample, index, own).items():
                t_kind = sample_kind(pred)
                if t_kind != kind:
                    if name not in self._skipped:
                        self._skipped.add(name)
                        print_log(f'TeacherStudentAgreement: teacher {name!r} predicts '
                                  f'{t_kind} and the student {kind}: skipped.',
                                  logger='current', level=30)
                    continue
                kept[name] = pred
            getattr(self, f'_process_{kind}')(sample, kept, result)
            self.results.append(result)

    def _process_cls(self, sample, teachers, result):
        gt = self._gt_label(sample)
        p_s = _tensor(_get(sample, 'pred_score')).double().reshape(1, -1)
        conf_s, pred_s = p_s.max(1)
        result['student'] = dict(n=1.0, correct=float(pred_s == gt),
                                 bins=ece_bins(conf_s, pred_s == gt, self.num_bins))
        for name, pred in teachers.items():
            p_t = _tensor(_get(pred, 'pred_score')).double().reshape(1, -1)
            if p_t.shape != p_s.shape:
                raise ValueError(f'TeacherStudentAgreement: teacher {name!r} scores '
                                 f'{p_t.shape[1]} classes, the student {p_s.shape[1]}.')
            d = divergences(p_t, p_t.clamp_min(EPS).log(), p_s, p_s.clamp_min(EPS).log())
            conf_t, pred_t = p_t.max(1)
            result['teachers'][name] = dict(
                n=1.0, agree=float(d['agree']), kl=float(d['kl']), js=float(d['js']),
                correct=float(pred_t == gt),
                bins=ece_bins(conf_t, pred_t == gt, self.num_bins))

    @staticmethod
    def _gt_label(sample) -> int:
        gt = _tensor(_get(sample, 'gt_label'))
        if gt is None or gt.numel() != 1:
            raise ValueError('TeacherStudentAgreement: a classification sample needs one '
                             f'gt_label (single-label), got {gt!r}.')
        return int(gt.reshape(-1)[0])

    @staticmethod
    def _pixel_probs(logits: torch.Tensor):
        """(C, H, W) logits -> (H*W, C) probabilities and log-probabilities (float64)."""
        logits = logits.double()
        if logits.dim() == 2:
            logits = logits[None]
        if logits.shape[0] == 1:  # mmseg's one-channel binary head: sigmoid
            logits = torch.cat([torch.zeros_like(logits), logits])  # softmax = (1 - sig, sig)
        logp = logits.flatten(1).t().log_softmax(1)
        return logp.exp(), logp

    def _process_seg(self, sample, teachers, result):
        logits_s = _tensor(_get(sample, 'seg_logits'))
        gt = _tensor(_get(sample, 'gt_sem_seg'))
        if gt is None:
            raise ValueError('TeacherStudentAgreement: a segmentation sample needs gt_sem_seg '
                             '(its ignored pixels are excluded).')
        gt = gt.reshape(-1).long()
        if gt.numel() != logits_s.shape[-1] * logits_s.shape[-2]:
            raise ValueError(f'TeacherStudentAgreement: seg_logits {tuple(logits_s.shape)} and '
                             f'gt_sem_seg ({gt.numel()} pixels) differ in size.')
        valid = gt != self.ignore_index
        gt = gt[valid]
        p_s, logp_s = self._pixel_probs(logits_s)
        p_s, logp_s = p_s[valid], logp_s[valid]
        conf_s, pred_s = p_s.max(1)
        n = float(valid.sum())
        result['student'] = dict(n=n, correct=float((pred_s == gt).sum()),
                                 bins=ece_bins(conf_s, pred_s == gt, self.num_bins))
        for name, pred in teachers.items():
            logits_t = _tensor(_get(pred, 'seg_logits'))
            if logits_t.shape[-2:] != logits_s.shape[-2:]:
                raise ValueError(f'TeacherStudentAgreement: teacher {name!r} seg_logits '
                                 f'{tuple(logits_t.shape)} vs student {tuple(logits_s.shape)}: '
                                 'both must be at the original image size.')
            p_t, logp_t = self._pixel_probs(logits_t)
            p_t, logp_t = p_t[valid], logp_t[valid]
            if p_t.shape != p_s.shape:
                raise ValueError(f'TeacherStudentAgreement: teacher {name!r} has '
                                 f'{p_t.shape[1]} classes, the student {p_s.shape[1]}.')
            d = divergences(p_t, logp_t, p_s, logp_s)
            conf_t, pred_t = p_t.max(1)
            result['teachers'][name] = dict(
                n=n, agree=float(d['agree'].sum()), kl=float(d['kl'].sum()),
                js=float(d['js'].sum()), correct=float((pred_t == gt).sum()),
                bins=ece_bins(conf_t, pred_t == gt, self.num_bins))

    def _kept_boxes(self, pred):
        inst = _get(pred, 'pred_instances')
        boxes, scores, labels = (_tensor(_get(inst, k)) for k in ('bboxes', 'scores', 'labels'))
        keep = scores >= self.score_thr
        return boxes.reshape(-1, 4)[keep], scores[keep], labels[keep]

    def _dece_bins(self, boxes, scores, labels, gt):
        gt_boxes, gt_labels = gt
        hit = match_boxes(boxes, scores, gt_boxes, 0.5, labels, gt_labels) >= 0
        return ece_bins(scores, hit, self.num_bins)

    def _process_det(self, sample, teachers, result):
        gt_inst = _get(sample, 'gt_instances')
        if gt_inst is None:
            raise ValueError('TeacherStudentAgreement: a detection sample needs gt_instances '
                             '(for the D-ECE); load the annotations in the test pipeline.')
        gt_boxes = _tensor(_get(gt_inst, 'bboxes')).reshape(-1, 4)
        gt_labels = _tensor(_get(gt_inst, 'labels')).reshape(-1)
        ignore = _get(gt_inst, 'ignore_flags')
        if ignore is not None:
            keep = ~_tensor(ignore).bool().reshape(-1)
            gt_boxes, gt_labels = gt_boxes[keep], gt_labels[keep]
        gt = (gt_boxes, gt_labels)
        s_boxes, s_scores, s_labels = self._kept_boxes(sample)
        result['student'] = dict(n=float(len(s_scores)),
                                 bins=self._dece_bins(s_boxes, s_scores, s_labels, gt))
        for name, pred in teachers.items():
            t_boxes, t_scores, t_labels = self._kept_boxes(pred)
            match = match_boxes(t_boxes, t_scores, s_boxes, self.iou_thr)
            hit = match >= 0
            matched_scores = torch.zeros(len(t_scores), dtype=torch.float64)
            matched_scores[hit] = s_scores[match[hit]].double()
            result['teachers'][name] = dict(
                n=float(len(t_scores)), matched=float(hit.sum()),
                same_class=float((t_labels[hit] == s_labels[match[hit]]).sum()),
                score_kl=float(bernoulli_kl(t_scores, matched_scores).sum()),
                bins=self._dece_bins(t_boxes, t_scores, t_labels, gt))

    # -------------------------------------------------------------- compute
    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        kinds = {r['kind'] for r in results}
        if len(kinds) > 1:
            raise ValueError(f'TeacherStudentAgreement: student predictions of several kinds '
                             f'{sorted(kinds)} in one evaluation.')
        if not results:
            return {}
        kind = kinds.pop()
        names = list(dict.fromkeys(n for r in results for n in r['teachers']))

        def total(parts, key):
            return sum(p[key] for p in parts)

        def ratio(a, b):
            return float(a / b) if b > 0 else float('nan')

        out = {}
        student = [r['student'] for r in results]
        if kind == 'det':
            out['student_dece'] = ece_from_bins(total(student, 'bins'))
        else:
            out['student_acc'] = ratio(total(student, 'correct'), total(student, 'n'))
            out['student_ece'] = ece_from_bins(total(student, 'bins'))
        for name in names:
            parts = [r['teachers'][name] for r in results if name in r['teachers']]
            n = total(parts, 'n')
            if kind == 'det':
                matched = total(parts, 'matched')
                out.update({f'{name}/box_recall': ratio(matched, n),
                            f'{name}/class_agree': ratio(total(parts, 'same_class'), matched),
                            f'{name}/score_kl': ratio(total(parts, 'score_kl'), n),
                            f'{name}/teacher_dece': ece_from_bins(total(parts, 'bins'))})
            else:
                out.update({f'{name}/top1': ratio(total(parts, 'agree'), n),
                            f'{name}/kl': ratio(total(parts, 'kl'), n),
                            f'{name}/js': ratio(total(parts, 'js'), n),
                            f'{name}/teacher_acc': ratio(total(parts, 'correct'), n),
                            f'{name}/teacher_ece': ece_from_bins(total(parts, 'bins'))})
        return out
