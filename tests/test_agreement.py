"""mmkd.TeacherStudentAgreement: every formula against a hand computation (classification,
segmentation with ignored pixels, detection with a known matching), DDP collection (two gloo
processes = one process), the metric's own teachers, and tools/test.py on the digits demo."""
import math
import re

import pytest
import torch

import mmkd.evaluation.agreement  # noqa: F401 (registers the metric until __init__ does)
from conftest import DIGITS, batch, build, digits_cfg, forked_ranks, run_tool
from mmkd.evaluation.agreement import (EPS, TeacherStudentAgreement, bernoulli_kl, ece_bins,
                                       ece_from_bins, match_boxes)

ln = math.log


def kl(p, q):
    """KL(p || q) written out, 0 log 0 = 0."""
    return sum(a * ln(a / b) for a, b in zip(p, q) if a > 0)


def js(p, q):
    """The definition: KL(p || m) / 2 + KL(q || m) / 2, m the mixture."""
    m = [(a + b) / 2 for a, b in zip(p, q)]
    return kl(p, m) / 2 + kl(q, m) / 2


def evaluate(metric, samples, chunks=1):
    """Feed ``samples`` in ``chunks`` batches and evaluate, as MMEngine's loop does."""
    step = math.ceil(len(samples) / chunks)
    for i in range(0, len(samples), step):
        metric.process({}, samples[i:i + step])
    return metric.evaluate(len(samples))


# ------------------------------------------------------------------ building blocks
def test_ece_bins_are_right_closed_and_ece_weights_bins_by_mass():
    # 4 bins (0, .25], (.25, .5], (.5, .75], (.75, 1]; 0 falls in the first
    bins = ece_bins(torch.tensor([0.5, 0.25, 0.0, 1.0, 0.26]),
                    torch.tensor([1, 0, 0, 1, 1]), 4)
    assert bins[0].tolist() == [2, 2, 0, 1]             # counts
    assert bins[1].tolist() == pytest.approx([0.25, 0.76, 0, 1.0])   # summed confidence
    assert bins[2].tolist() == [0, 2, 0, 1]             # summed correctness
    # |0 - .25| + |2 - .76| + |1 - 1| over 5 samples
    assert ece_from_bins(bins) == pytest.approx((0.25 + 1.24) / 5)
    assert math.isnan(ece_from_bins(ece_bins(torch.zeros(0), torch.zeros(0), 4)))


def test_bernoulli_kl_and_greedy_matching_by_hand():
    a, b = 0.9, 0.7
    assert float(bernoulli_kl(torch.tensor([a]), torch.tensor([b]))) == pytest.approx(
        a * ln(a / b) + (1 - a) * ln((1 - a) / (1 - b)))
    # against 0: the student score is clamped to EPS
    assert float(bernoulli_kl(torch.tensor([a]), torch.tensor([0.0]))) == pytest.approx(
        a * ln(a / EPS) + (1 - a) * ln((1 - a) / (1 - EPS)))
    # The lower-scored reference comes first in the list, yet the higher-scored one (IoU 1)
    # takes the only candidate: greedy by score, not by list order.
    ref = torch.tensor([[1., 0, 11, 10], [0, 0, 10, 10]])
    cand = torch.tensor([[0., 0, 10, 10], [40, 40, 50, 50]])
    assert match_boxes(ref, torch.tensor([0.5, 0.9]), cand, 0.5).tolist() == [-1, 0]
    # with labels, only candidates of the same label count
    assert match_boxes(ref, torch.tensor([0.5, 0.9]), cand, 0.5, torch.tensor([0, 1]),
                       torch.tensor([0, 0])).tolist() == [0, -1]   # IoU 90 / 110 >= .5


# ------------------------------------------------------------------ classification
def cls_samples(as_dict=False):
    from mmpretrain.structures import DataSample

    def sample(p, label):
        return DataSample().set_pred_score(torch.tensor(p)).set_gt_label(label)
    rows = [  # (student p_s, teacher p_t, gt)
        ([0.5, 0.3, 0.2], [0.7, 0.2, 0.1], 1),
        ([0.1, 0.6, 0.3], [0.0, 0.4, 0.6], 2),   # p_t has a zero: its term is 0
        ([1.0, 0.0, 0.0], [0.4, 0.6, 0.0], 1)]   # p_s has a zero under p_t > 0: clamped
    out = []
    for p_s, p_t, gt in rows:
        s = sample(p_s, gt)
        s.teacher_predictions = dict(t=sample(p_t, gt))
        if as_dict:   # what MMEngine's evaluator passes; the teachers' samples as dicts too
            s = s.to_dict()
            s['teacher_predictions'] = dict(t=s['teacher_predictions']['t'].to_dict())
        out.append(s)
    return out


@pytest.mark.parametrize('as_dict', [False, True])
def test_classification_by_hand(as_dict):
    res = evaluate(TeacherStudentAgreement(num_bins=4), cls_samples(as_dict), chunks=2)
    assert res['agreement/t/top1'] == pytest.approx(1 / 3)   # argmax 0=0, 2!=1, 1!=0
    kl_3 = 0.4 * ln(0.4 / 1.0) + 0.6 * ln(0.6 / EPS)      # log p_s clamped at 1e-12
    assert res['agreement/t/kl'] == pytest.approx(
        (kl([0.7, 0.2, 0.1], [0.5, 0.3, 0.2]) + kl([0.0, 0.4, 0.6], [0.1, 0.6, 0.3]) + kl_3) / 3)
    assert res['agreement/t/js'] == pytest.approx(
        (js([0.7, 0.2, 0.1], [0.5, 0.3, 0.2]) + js([0.0, 0.4, 0.6], [0.1, 0.6, 0.3])
         + js([0.4, 0.6, 0.0], [1.0, 0.0, 0.0])) / 3)
    assert res['agreement/student_acc'] == 0.0           # predicts 0, 1, 0 for 1, 2, 1
    assert res['agreement/t/teacher_acc'] == pytest.approx(2 / 3)   # 0, 2, 1 for 1, 2, 1
    # student: conf .5 (bin 2), .6 (bin 3), 1.0 (bin 4), all wrong
    assert res['agreement/student_ece'] == pytest.approx((0.5 + 0.6 + 1.0) / 3)
    # teacher: .7 wrong, .6 right, .6 right all in (.5, .75]: |2 - 1.9| / 3 (per-sample
    # gaps would give (.7 + .4 + .4) / 3: the bins matter)
    assert res['agreement/t/teacher_ece'] == pytest.approx(0.1 / 3)
    assert set(res) == {'agreement/student_acc', 'agreement/student_ece', 'agreement/t/top1',
                        'agreement/t/kl', 'agreement/t/js', 'agreement/t/teacher_acc',
                        'agreement/t/teacher_ece'}


def test_teacher_selection_kind_mismatch_and_missing_teachers(monkeypatch):
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    samples = cls_samples()
    det = DetDataSample()
    det.pred_instances = InstanceData(bboxes=torch.zeros(0, 4), scores=torch.zeros(0),
                                      labels=torch.zeros(0, dtype=torch.long))
    for s in samples:
        s.teacher_predictions = dict(t=s.teacher_predictions['t'], u=s, d=det)
    logged = []
    monkeypatch.setattr(mmkd.evaluation.agreement, 'print_log',
                        lambda msg, **kwargs: logged.append(msg))
    res = evaluate(TeacherStudentAgreement(teachers=['u', 'd']), samples, chunks=2)
    assert res['agreement/u/top1'] == 1.0 and res['agreement/u/kl'] == pytest.approx(0)
    assert res['agreement/u/js'] == pytest.approx(0, abs=1e-12)
    assert not any(k.startswith('agreement/d/') or k.startswith('agreement/t/') for k in res)
    # once, not per sample or batch
    assert logged == ["TeacherStudentAgreement: teacher 'd' predicts det and the student cls: "
                      'skipped.']
    with pytest.raises(KeyError, match=r"teachers \['v'\] have no predictions.*\['d', 't', 'u'"):
        TeacherStudentAgreement(teachers=['v']).process({}, samples)
    bare = cls_samples()[0]
    del bare.teacher_predictions
    with pytest.raises(RuntimeError, match=r'model.val_teachers=True.*teachers=dict'):
        TeacherStudentAgreement().process({}, [bare])
    for bad, match in [(dict(num_bins=0), 'num_bins'), (dict(score_thr=1.0), 'score_thr'),
                       (dict(iou_thr=0.0), 'iou_thr'), (dict(teachers=3), 'teachers must'),
                       (dict(teachers=dict(a=dict(config='x.py'))), r'teachers\.a'),
                       (dict(teachers=dict(a=dict(config='x.py', checkpoint='c', extra=1))),
                        'unknown keys')]:
        with pytest.raises((ValueError, TypeError, KeyError), match=match):
            TeacherStudentAgreement(**bad)


# ------------------------------------------------------------------ segmentation
def seg_sample(student_logits, teacher_logits, gt):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    def sample(logits):
        s = SegDataSample()
        s.seg_logits = PixelData(data=torch.tensor(logits).reshape(2, 1, -1))
        s.gt_sem_seg = PixelData(data=torch.tensor(gt).reshape(1, 1, -1))
        return s
    s = sample(student_logits)
    s.teacher_predictions = dict(t=sample(teacher_logits))
    return s


def test_segmentation_per_pixel_by_hand_with_ignored_pixels():
    l3, l4 = ln(3), ln(4)   # logits (0, ln 3) -> p = (1/4, 3/4); (0, ln 4) -> (1/5, 4/5)
    # image 1, pixels a, b, c (c ignored, with logits that would dominate every mean)
    s1 = seg_sample([[0, 0, 90.], [l3, l4, -90.]], [[l3, 0, -90.], [0, l3, 90.]], [1, 1, 255])
    # image 2, one pixel
    s2 = seg_sample([[l3], [0.]], [[0.], [l3]], [0])
    res = evaluate(TeacherStudentAgreement(num_bins=4), [s1.to_dict(), s2])
    pa_s, pa_t = [.25, .75], [.75, .25]
    pb_s, pb_t = [.2, .8], [.25, .75]
    p2_s, p2_t = [.75, .25], [.25, .75]
    pairs = [(pa_t, pa_s), (pb_t, pb_s), (p2_t, p2_s)]
    assert res['agreement/t/top1'] == pytest.approx(1 / 3)   # only pixel b agrees
    assert res['agreement/t/kl'] == pytest.approx(sum(kl(t, s) for t, s in pairs) / 3)
    assert res['agreement/t/js'] == pytest.approx(sum(js(t, s) for t, s in pairs) / 3)
    assert res['agreement/student_acc'] == 1.0                # 1, 1, 0
    assert res['agreement/t/teacher_acc'] == pytest.approx(1 / 3)   # 0, 1, 1 vs 1, 1, 0
    # student: .75 right, .8 right (bin 4), .75 right; teacher: all .75, one right
    assert res['agreement/student_ece'] == pytest.approx(((2 - 1.5) + (1 - 0.8)) / 3)
    assert res['agreement/t/teacher_ece'] == pytest.approx(abs(1 - 2.25) / 3)
    # mmseg's one-channel (sigmoid) head: p = (1 - sigmoid, sigmoid)
    p, logp = TeacherStudentAgreement._pixel_probs(torch.full((1, 1, 1), l3))
    assert p[0].tolist() == pytest.approx([0.25, 0.75])
    assert logp[0].exp().tolist() == pytest.approx([0.25, 0.75])


# ------------------------------------------------------------------ detection
def det_sample(pred, teacher, gt):
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData

    def inst(rows, **extra):
        return InstanceData(bboxes=torch.tensor([r[0] for r in rows]).reshape(-1, 4).float(),
                            labels=torch.tensor([r[-1] for r in rows], dtype=torch.long),
                            **extra)

    def sample(rows):
        s = DetDataSample()
        s.pred_instances = inst(rows, scores=torch.tensor([r[1] for r in rows]).float())
        return s
    s = sample(pred)
    s.gt_instances = inst([(g[0], g[1]) for g in gt],
                          ignore_flags=torch.tensor([g[2] for g in gt], dtype=torch.bool))
    s.teacher_predictions = dict(t=sample(teacher))
    return s


def det_samples():
    one = det_sample(
        pred=[([0, 0, 10, 10], .7, 0),         # s0
              ([20, 20, 30, 35], .45, 2),      # s1: IoU 100/150 with t2, another class
              ([50, 50, 60, 60], .1, 0)],      # below score_thr: not kept
        teacher=[([1, 0, 11, 10], .5, 0),      # t0: s0 goes to t1 (higher score): unmatched
                 ([0, 0, 10, 10], .9, 0),      # t1 -> s0
                 ([20, 20, 30, 30], .8, 1),    # t2 -> s1
                 ([50, 50, 60, 60], .6, 0),    # t3: its student box is below threshold
                 ([0, 0, 10, 10], .2, 0)],     # below score_thr: not kept
        gt=[([0, 0, 10, 10], 0, False), ([20, 20, 30, 30], 1, False),
            ([50, 50, 60, 60], 0, True)])      # ignored: t3 counts as wrong
    two = det_sample(pred=[], teacher=[([0, 0, 5, 5], .95, 3)], gt=[])
    return [one, two]


def test_detection_box_agreement_and_dece_by_hand():
    res = evaluate(TeacherStudentAgreement(num_bins=4), det_samples())

    def bkl(a, b):
        a, b = min(max(a, EPS), 1 - EPS), min(max(b, EPS), 1 - EPS)
        return a * ln(a / b) + (1 - a) * ln((1 - a) / (1 - b))
    assert res['agreement/t/box_recall'] == pytest.approx(2 / 5)    # t1, t2 of t0..t3 + one
    assert res['agreement/t/class_agree'] == pytest.approx(1 / 2)   # (t1, s0) yes, (t2, s1) no
    assert res['agreement/t/score_kl'] == pytest.approx(
        (bkl(.5, 0) + bkl(.9, .7) + bkl(.8, .45) + bkl(.6, 0) + bkl(.95, 0)) / 5)
    # teacher: .9 right, .8 right, .95 wrong (bin 4); .6 wrong, ignored gt (bin 3); .5 wrong,
    # a duplicate of t1's ground truth (bin 2)
    assert res['agreement/t/teacher_dece'] == pytest.approx(
        (abs(2 - 2.65) + 0.6 + 0.5) / 5)
    # student: .7 right (bin 3); .45 wrong class (bin 2)
    assert res['agreement/student_dece'] == pytest.approx((0.3 + 0.45) / 2)
    assert set(res) == {f'agreement/{k}' for k in (
        't/box_recall', 't/class_agree', 't/score_kl', 't/teacher_dece', 'student_dece')}


# ------------------------------------------------------------------ DDP (two gloo processes)
def random_samples(n, seed):
    """n classification, n segmentation and n detection samples with random predictions."""
    g = torch.Generator().manual_seed(seed)
    from mmpretrain.structures import DataSample
    cls = []
    for i in range(n):
        s = DataSample().set_pred_score(torch.rand(5, generator=g).softmax(0)).set_gt_label(i % 5)
        s.teacher_predictions = dict(
            a=DataSample().set_pred_score(torch.rand(5, generator=g).softmax(0)))
        cls.append(s)
    seg = [seg_sample(torch.randn(2, 6, generator=g).tolist(),
                      torch.randn(2, 6, generator=g).tolist(),
                      torch.randint(0, 3, (6, ), generator=g).clamp(max=1).tolist())
           for _ in range(n)]

    def boxes(k):
        xy = torch.randint(0, 20, (k, 2), generator=g).float()
        return [(b.tolist(), float(s), int(c)) for b, s, c in zip(
            torch.cat([xy, xy + 10], 1), torch.rand(k, generator=g),
            torch.randint(0, 2, (k, ), generator=g))]
    det = [det_sample(boxes(6), boxes(6), [(b, c, False) for b, _, c in boxes(3)])
           for _ in range(n)]
    return dict(cls=cls, seg=seg, det=det)


def rank_worker(rank, port, out, n):
    import torch.distributed as dist
    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank,
                            world_size=2)
    results = {}
    for kind, samples in random_samples(n, seed=0).items():
        # DefaultSampler's split: rank r gets r, r+2, ..., padded with the first indices
        mine = list(range(rank, n, 2))
        mine += list(range(math.ceil(n / 2) - len(mine)))
        metric = TeacherStudentAgreement()
        for i in range(0, len(mine), 2):   # batches of 2
            metric.process({}, [samples[j] for j in mine[i:i + 2]])
        results[kind] = metric.evaluate(n)
    torch.save(results, out)
    dist.destroy_process_group()


def test_two_gloo_processes_give_the_single_process_result(tmp_path):
    n = 7   # odd: rank 1 gets a padded duplicate, which collect_results must drop
    ranks = forked_ranks(rank_worker, tmp_path, n, timeout=120)
    for kind, samples in random_samples(n, seed=0).items():
        single = evaluate(TeacherStudentAgreement(), samples, chunks=3)
        padded = evaluate(TeacherStudentAgreement(), samples + samples[:1])  # what not to get
        assert single != padded, kind
        for r in range(2):   # the result is broadcast to every rank
            assert ranks[r][kind].keys() == single.keys(), kind
            for k, v in single.items():
                assert ranks[r][kind][k] == pytest.approx(v, rel=1e-12, nan_ok=True), (kind, k)


# ------------------------------------------------------------------ models
def test_distiller_val_teachers_and_own_teachers_agree(tmp_path, teacher_ckpts):
    """The distiller's teacher predictions (val_teachers=True) and the metric's own teacher
    built from the same config and checkpoint give the same numbers; the student as its own
    'teacher' agrees with itself exactly."""
    from mmengine.config import Config
    model = build(digits_cfg(teacher_ckpts['digits'], val_teachers=True)).eval()
    torch.manual_seed(0)
    inputs, samples = batch(n=6, size=16)
    data_batch = dict(inputs=[(x * 80 + 78).clamp(0, 255).to(torch.uint8) for x in inputs],
                      data_samples=samples)
    with torch.no_grad():
        outputs = model.test_step(data_batch)
    assert set(outputs[0].teacher_predictions) == {'teacher'}
    via_distiller = evaluate(TeacherStudentAgreement(), [o.to_dict() for o in outputs])

    student_ckpt = str(tmp_path / 'student.pth')
    torch.save(dict(state_dict=model.student.state_dict()), student_ckpt)
    student_cfg = Config.fromfile(DIGITS['student'])
    own = TeacherStudentAgreement(teachers=dict(
        teacher=dict(config=DIGITS['teacher'], checkpoint=teacher_ckpts['digits']),
        itself=dict(config=student_cfg, checkpoint=student_ckpt)))
    before = [o.pred_score.clone() for o in outputs]
    own.process(data_batch, [o.to_dict() for o in outputs])
    res = own.evaluate(len(outputs))
    # the teachers predicted on copies: the student's samples (the batch's own objects in
    # mmpretrain) keep the student's scores
    assert all(torch.equal(o.pred_score, b) for o, b in zip(outputs, before))
    for k, v in via_distiller.items():
        assert res[k] == pytest.approx(v, rel=1e-9, abs=1e-12), k
    assert res['agreement/itself/top1'] == 1.0
    assert res['agreement/itself/kl'] == pytest.approx(0, abs=1e-9)
    assert res['agreement/itself/teacher_acc'] == res['agreement/student_acc']
    assert res['agreement/itself/teacher_ece'] == pytest.approx(res['agreement/student_ece'])
    assert res['agreement/teacher/top1'] < 1 or res['agreement/teacher/kl'] > 0
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        TeacherStudentAgreement(teachers=dict(t=dict(
            config=DIGITS['teacher'], checkpoint=str(tmp_path / 'missing.pth')))).process(
                data_batch, [o.to_dict() for o in outputs])


def test_tools_test_on_the_digits_kd_config(tmp_path, teacher_ckpts):
    """tools/test.py with the distiller's teachers (``model.val_teachers=True``) compared by
    the metric beside Accuracy, on 40 test images."""
    student_ckpt = str(tmp_path / 'student.pth')
    torch.manual_seed(1)
    from mmengine.config import Config
    torch.save(dict(state_dict=build(Config.fromfile(DIGITS['student']).model).state_dict()),
               student_ckpt)   # a plain student checkpoint: the distiller loads its student
    config = tmp_path / 'kd_agreement.py'
    config.write_text('\n'.join([
        f'_base_ = {DIGITS["distill"]!r}',
        "custom_imports = dict(imports=['mmkd', 'mmkd.evaluation.agreement'], "
        'allow_failed_imports=False)',
        'test_dataloader = dict(batch_size=16, dataset=dict(indices=40))',
        "test_evaluator = [dict(type='Accuracy', topk=(1, )), "
        "dict(type='mmkd.TeacherStudentAgreement')]"]) + '\n')
    out = run_tool([
        'tools/test.py', str(config), student_ckpt, '--work-dir', str(tmp_path / 'w'),
        '--cfg-options', f'model.teacher.checkpoint={teacher_ckpts["digits"]}',
        'model.val_teachers=True']).stdout
    got = {k: float(v) for k, v in re.findall(
        r'(agreement/[\w/]+|accuracy/top1): ([-0-9.e]+|nan)', out)}
    assert set(got) == {'accuracy/top1', 'agreement/student_acc', 'agreement/student_ece'} | {
        f'agreement/teacher/{k}' for k in ('top1', 'kl', 'js', 'teacher_acc', 'teacher_ece')
    }, out[-3000:]
    # the same student predictions as Accuracy's (which reports %)
    assert got['agreement/student_acc'] * 100 == pytest.approx(got['accuracy/top1'], abs=0.01)
    assert 0 <= got['agreement/teacher/top1'] <= 1 and got['agreement/teacher/kl'] > 0
    assert 0 < got['agreement/teacher/js'] <= math.log(2)


@pytest.mark.parametrize('task', ['det', 'seg'])
def test_dense_distillers_val_teachers_and_own_teachers(task, shapes_root, teacher_ckpts):
    """The shapes demo distillers' real output samples (mmdet / mmseg, from the test pipeline
    on 2 images) go through the metric, and the metric's own teacher (same config and
    checkpoint, run on the evaluator's data batch) gives the distiller's numbers."""
    from mmengine.config import Config
    from mmengine.dataset import pseudo_collate
    from mmengine.registry import DATASETS, DefaultScope
    from conftest import DET, SEG
    cfgs = dict(det=DET, seg=SEG)[task]
    cfg = Config.fromfile(cfgs['distill'])
    # the scope only for this test (init_default_scope would leave it for the next ones)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        model_cfg = cfg.model
        model_cfg.teacher.checkpoint = teacher_ckpts[task]
        model_cfg.val_teachers = True
        if cfg.get('data_preprocessor') is not None and model_cfg.get('data_preprocessor') is None:
            model_cfg.data_preprocessor = cfg.data_preprocessor
        model = build(model_cfg, cfg.default_scope).eval()
        data_cfg = cfg.test_dataloader.dataset
        data_cfg.data_root = shapes_root
        data_cfg.pop('indices', None)
        dataset = DATASETS.build(data_cfg)
        data_batch = pseudo_collate([dataset[0], dataset[1]])
        with torch.no_grad():
            outputs = model.test_step(data_batch)
        via_distiller = evaluate(TeacherStudentAgreement(), [o.to_dict() for o in outputs])
        own = TeacherStudentAgreement(teachers=dict(teacher=dict(
            config=cfgs['teacher'], checkpoint=teacher_ckpts[task])))
        own.process(data_batch, [o.to_dict() for o in outputs])
        res = own.evaluate(2)
        assert res.keys() == via_distiller.keys()
        for k, v in via_distiller.items():
            assert res[k] == pytest.approx(v, rel=1e-6, nan_ok=True), k
        print(task, res)
