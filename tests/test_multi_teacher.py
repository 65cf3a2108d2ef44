"""Several teachers: named teachers from several packages, their views of the batch, the
ensemble method, loss-weight schedules and a student initialised from a teacher."""
import copy
import math

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.logging import MessageHub

import mmkd  # noqa: F401
from mmkd.distillers import (CosineDecay, Distiller, LinearWarmup, Normalisation, Step,
                             TeacherView, build_loss_weight)
from mmkd.methods import EnsembleKD, LogitKD

from conftest import (DEMO, DET, DIGITS, SEG, batch, build, digits_cfg,
                      random_teacher_checkpoint)

BOTH = f'{DEMO}/shapes_seg/rtk-both_deeplabv3_r18-tiny-d8_shapes.py'


def seg_batch(n=2, size=64):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    samples = []
    for i in range(n):
        s = SegDataSample(metainfo=dict(img_shape=(size, size), pad_shape=(size, size),
                                        ori_shape=(size, size), scale_factor=(1.0, 1.0)))
        s.gt_sem_seg = PixelData(data=torch.randint(0, 4, (1, size, size)))
        samples.append(s)
    return torch.randn(n, 3, size, size), samples


@pytest.fixture(scope='module')
def two_task_cfg(teacher_ckpts):
    model = copy.deepcopy(Config.fromfile(BOTH).model)
    model.teachers.seg.checkpoint = teacher_ckpts['seg']
    model.teachers.det.checkpoint = teacher_ckpts['det']
    model.blocks.seg_stages.student = model.blocks.det_stages.student = 'backbone.layer4'
    model.blocks.seg_stages.teacher = 'seg:backbone.layer4'
    model.blocks.det_stages.teacher = 'det:backbone.layer4'
    model.dry_run_input_shape = (2, 3, 64, 64)
    return model


def test_two_teachers_from_two_packages(two_task_cfg):
    d = build(two_task_cfg, 'mmseg')
    assert isinstance(d, Distiller) and set(d.teachers) == {'seg', 'det'}
    assert d.teacher_info('seg').scope == 'mmseg' and d.teacher_info('det').scope == 'mmdet'
    assert type(d.teachers['det']).__name__ == 'RetinaNet'
    d.train()
    for model in d.teachers.values():
        assert not model.training and all(not p.requires_grad for p in model.parameters())
    # Teachers are no submodules: not in the state dict, the parameters or init_weights.
    assert all(k.startswith(('student.', 'methods.')) for k in d.state_dict())
    teacher_params = {id(p) for m in d.teachers.values() for p in m.parameters()}
    assert not teacher_params & {id(p) for p in d.parameters()}
    # Each teacher stops after its own deepest point: the det teacher never runs its neck.
    calls = []
    d.teachers['det'].neck.register_forward_hook(lambda *a: calls.append('neck'))
    losses = d(*seg_batch(), mode='loss')
    assert {'distill.seg_stages.loss_rtk', 'distill.det_stages.loss_rtk'} <= set(losses)
    assert not calls
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    assert all(p.grad is None for m in d.teachers.values() for p in m.parameters())
    with pytest.raises(RuntimeError, match=r"one teacher; this one has \['seg', 'det'\]"):
        d.teacher


def test_teacher_names_are_checked_at_build(two_task_cfg):
    cfg = copy.deepcopy(two_task_cfg)
    cfg.blocks.det_stages.teacher = 'dett:backbone.layer4'
    with pytest.raises(KeyError, match=r"unknown teacher 'dett'.*\['seg', 'det'\]"):
        build(cfg, 'mmseg')
    cfg.blocks.det_stages.teacher = 'backbone.layer4'  # which teacher?
    with pytest.raises(ValueError, match=r"does not say which teacher.*'seg:neck'"):
        build(cfg, 'mmseg')
    cfg.blocks.pop('det_stages')  # the det teacher feeds no block
    with pytest.raises(ValueError, match=r"\['det'\] are read by no block"):
        build(cfg, 'mmseg')
    cfg = copy.deepcopy(two_task_cfg)
    cfg.teacher = dict(config=SEG['teacher'], checkpoint='x.pth')
    with pytest.raises(KeyError, match='exactly one of `teacher`'):
        build(cfg, 'mmseg')
    cfg = copy.deepcopy(two_task_cfg)
    cfg.eval_teacher = True
    with pytest.raises(ValueError, match='ambiguous with several teachers'):
        build(cfg, 'mmseg')
    cfg.eval_teacher = 'sge'
    with pytest.raises(KeyError, match=r"eval_teacher='sge'.*\['seg', 'det'\]"):
        build(cfg, 'mmseg')


def test_val_teachers_put_each_teachers_prediction_on_the_students_samples(two_task_cfg):
    """``val_teachers``: in predict mode every chosen teacher predicts on copies of the samples
    (mmseg/mmdet write into the samples they get) and its output sample lands in the student's
    ``teacher_predictions``; the student's own prediction is untouched by them."""
    cfg = copy.deepcopy(two_task_cfg)
    cfg.val_teachers = True
    d = build(cfg, 'mmseg')
    assert d.val_teachers == ['seg', 'det']
    d.eval()
    inputs, samples = seg_batch()
    with torch.no_grad():
        plain = d.student(inputs, [s.clone() for s in samples], mode='predict')
        out = d(inputs, samples, mode='predict')
        seg_alone = d.teachers['seg'](inputs, [s.clone() for s in samples], mode='predict')
    for o, p, t in zip(out, plain, seg_alone):
        assert set(o.teacher_predictions) == {'seg', 'det'}
        assert torch.equal(o.seg_logits.data, p.seg_logits.data)
        assert torch.equal(o.teacher_predictions['seg'].seg_logits.data, t.seg_logits.data)
        assert 'pred_instances' in o.teacher_predictions['det']
        assert 'pred_instances' not in o  # the det teacher wrote into its own copy
    cfg.val_teachers = ['det']
    assert build(cfg, 'mmseg').val_teachers == ['det']
    cfg.val_teachers = ['sge']
    with pytest.raises(KeyError, match=r"val_teachers: 'sge'.*\['seg', 'det'\]"):
        build(cfg, 'mmseg')


def test_dict_points_name_their_teacher_and_lists_mix_teachers(teacher_ckpts):
    a = dict(config=DIGITS['teacher'], checkpoint=teacher_ckpts['digits'])
    cfg = digits_cfg(teacher_ckpts['digits'], teacher=None, teachers=dict(a=a, b=dict(a)),
                     blocks=dict(ens=dict(student='head.fc', teacher=[
                         'a:head.fc', dict(teacher='b', module='head.fc')],
                         method=dict(type='EnsembleKD', tau=2.0))))
    d = build(cfg)
    assert d.blocks['ens'].teacher_points[1][0] == 'b'
    inputs, samples = batch()
    losses = d(inputs, samples, mode='loss')
    # Two identical teachers: the ensemble is either one, i.e. LogitKD at tau 2.
    with torch.no_grad():
        s = d.student(inputs, mode='tensor')
        t = d.teachers['a'](inputs, mode='tensor')
    ref = LogitKD(tau=2.0)
    ref.build(s, t)
    assert torch.allclose(losses['distill.ens.loss_kd'], ref(s, t)['loss_kd'], atol=1e-6)


# ---------------------------------------------------------------------- views of the batch
def test_renormalisation_gives_what_the_teachers_own_preprocessor_gives():
    """A detection batch of two image sizes (padded): the student normalises RGB with ImageNet
    statistics, the teacher BGR with its own mean/std and pad value 5; the view of the
    student's batch equals the teacher preprocessor's output on the raw images."""
    from mmdet.models.data_preprocessors import DetDataPreprocessor
    from mmdet.structures import DetDataSample
    torch.manual_seed(0)
    student = DetDataPreprocessor(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
                                  bgr_to_rgb=True, pad_size_divisor=32)
    teacher = DetDataPreprocessor(mean=[100.0, 110.0, 120.0], std=[50.0, 60.0, 70.0],
                                  bgr_to_rgb=False, pad_size_divisor=32, pad_value=5)
    images = [torch.randint(0, 256, (3, 40, 50), dtype=torch.uint8),
              torch.randint(0, 256, (3, 64, 36), dtype=torch.uint8)]

    def data():
        return dict(inputs=[i.clone() for i in images],
                    data_samples=[DetDataSample(metainfo=dict(img_shape=tuple(i.shape[1:])))
                                  for i in images])
    s = student(data())
    expected = teacher(data())['inputs']
    view = TeacherView(Normalisation.of_preprocessor(student),
                       Normalisation.of_preprocessor(teacher), who='teacher')
    assert not view.identity
    got = view(s['inputs'], s['data_samples'])
    assert got.shape == expected.shape == (2, 3, 64, 64)
    assert (got - expected).abs().max() < 1e-4  # float32 rounding of values up to ~4
    # Borders: exactly the teacher's pad value.
    assert (got[0, :, 40:, :] == 5).all() and (got[1, :, :, 36:] == 5).all()
    # Alike normalisations pass the batch through untouched.
    same = TeacherView(Normalisation.of_preprocessor(student),
                       Normalisation.of_preprocessor(student))
    assert same.identity and same(s['inputs'], s['data_samples']) is s['inputs']


def test_teacher_with_its_own_normalisation_sees_it(teacher_ckpts, tmp_path):
    """The digits teacher's config normalises differently from the student's: the teacher's
    first conv receives what the teacher's own preprocessor makes of the raw batch."""
    from mmpretrain.models.utils import ClsDataPreprocessor
    teacher_cfg = Config.fromfile(DIGITS['teacher'])
    mean, std = [10.0, 20.0, 30.0], [40.0, 50.0, 60.0]
    cfg = digits_cfg(teacher_ckpts['digits'])
    cfg.teacher = dict(model=dict(teacher_cfg.model, data_preprocessor=dict(
        type='ClsDataPreprocessor', mean=mean, std=std, to_rgb=True)),
        scope='mmpretrain', checkpoint=teacher_ckpts['digits'])
    d = build(cfg)
    seen = []
    d.teacher.backbone.conv1.register_forward_pre_hook(lambda m, a: seen.append(a[0]))
    raw = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    from mmpretrain.structures import DataSample
    data = dict(inputs=list(raw), data_samples=[DataSample().set_gt_label(i) for i in range(4)])
    student_batch = d.data_preprocessor(copy.deepcopy(data), True)
    d(student_batch['inputs'], student_batch['data_samples'], mode='loss')
    own = ClsDataPreprocessor(mean=mean, std=std, to_rgb=True)(copy.deepcopy(data), False)
    assert (seen[-1] - own['inputs']).abs().max() < 1e-5
    # normalisation='student' restores the old behaviour: the student's batch as it is.
    cfg.teacher.normalisation = 'student'
    d = build(cfg)
    seen.clear()
    d.teacher.backbone.conv1.register_forward_pre_hook(lambda m, a: seen.append(a[0]))
    d(student_batch['inputs'], student_batch['data_samples'], mode='loss')
    assert torch.equal(seen[-1], student_batch['inputs'])


def test_teacher_reads_a_privileged_input_from_the_data_samples(teacher_ckpts):
    cfg = digits_cfg(teacher_ckpts['digits'])
    cfg.teacher.inputs = 'ref_img'
    d = build(cfg)
    seen = []
    d.teacher.backbone.conv1.register_forward_pre_hook(lambda m, a: seen.append(a[0]))
    inputs, samples = batch()
    refs = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    for s, r in zip(samples, refs):
        s.set_field(r, 'ref_img')
    d(inputs, samples, mode='loss')
    expected = Normalisation.of_preprocessor(d.data_preprocessor).normalise(refs)
    assert torch.allclose(seen[-1], expected, atol=1e-6)
    del samples[1].ref_img
    with pytest.raises(KeyError, match=r"field 'ref_img', which samples \[1\] lack.*"
                       'PackImageField'):
        d(inputs, samples, mode='loss')


def test_pack_image_field_puts_the_image_in_the_sample():
    import numpy as np
    from mmpretrain.datasets.transforms import PackInputs

    from mmkd.datasets import PackImageField
    img = np.random.randint(0, 256, (8, 6, 3), dtype=np.uint8)
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        pack = PackImageField(keys=['ref_img'], pack=dict(type='PackInputs'))
    out = pack(dict(img=img.copy(), gt_label=1, ref_img=img[::-1].copy()))
    assert torch.equal(out['data_samples'].ref_img,
                       torch.from_numpy(img[::-1].transpose(2, 0, 1).copy()))
    assert torch.equal(out['inputs'], PackInputs()(dict(img=img.copy()))['inputs'])
    with pytest.raises(KeyError, match="no 'ref_img' image"):
        pack(dict(img=img.copy(), gt_label=1))


def test_load_image_from_file_as_reads_a_second_image(tmp_path):
    import mmcv
    import numpy as np

    from mmkd.datasets import LoadImageFromFileAs
    img = np.random.RandomState(0).randint(0, 256, (5, 7, 3), dtype=np.uint8)
    mmcv.imwrite(img, str(tmp_path / 'ref.png'))
    out = LoadImageFromFileAs(key='ref_img', path_key='ref_path')(
        dict(ref_path=str(tmp_path / 'ref.png')))
    assert np.array_equal(out['ref_img'], img)  # BGR, as loaded (png is lossless)
    with pytest.raises(KeyError, match="no 'ref_path' path"):
        LoadImageFromFileAs(key='ref_img', path_key='ref_path')(dict())
    # Its own transforms see that image alone: the item's img and shapes are untouched.
    import mmpretrain.datasets  # noqa: F401 (registers mmpretrain's transforms)
    crop = LoadImageFromFileAs(key='ref_img', path_key='ref_path', transforms=[
        dict(type='mmpretrain.CenterCrop', crop_size=3)])
    item = crop(dict(ref_path=str(tmp_path / 'ref.png'), img=img[:4], img_shape=(4, 7)))
    assert np.array_equal(item['ref_img'], img[1:4, 2:5])
    assert item['img_shape'] == (4, 7) and item['img'].shape == (4, 7, 3)


# ---------------------------------------------------------------------- ensemble
def test_ensemble_kd_formulas_by_hand():
    torch.manual_seed(0)
    s = torch.randn(5, 7, requires_grad=True)
    t1, t2 = torch.randn(5, 7), torch.randn(5, 7)
    tau, w = 3.0, [0.25, 0.75]
    q = F.log_softmax(s / tau, 1)
    p1, p2 = F.softmax(t1 / tau, 1), F.softmax(t2 / tau, 1)

    def kl(p):
        return (p * (p.log() - q)).sum(1).mean() * tau ** 2
    expected = {'mean_prob': kl(w[0] * p1 + w[1] * p2),
                'mean_logit': kl(F.softmax((w[0] * t1 + w[1] * t2) / tau, 1)),
                'sum_kl': w[0] * kl(p1) + w[1] * kl(p2)}
    for combine, value in expected.items():
        m = EnsembleKD(combine=combine, tau=tau, teacher_weights=w)
        m.build(s, [t1, t2])
        got = m(s, [t1, t2])['loss_kd']
        assert torch.allclose(got, value, atol=1e-6), combine
        # Unnormalised weights: the means divide by their sum, sum_kl does not.
        m2 = EnsembleKD(combine=combine, tau=tau, teacher_weights=[1.0, 3.0])
        scale = 4.0 if combine == 'sum_kl' else 1.0
        assert torch.allclose(m2(s, [t1, t2])['loss_kd'], value * scale, atol=1e-5)
    # One teacher: all three are Hinton's KD.
    logit_kd = LogitKD(tau=tau)
    logit_kd.build(s, t1)
    ref = logit_kd(s, t1)['loss_kd']
    for combine in expected:
        assert torch.allclose(EnsembleKD(combine=combine, tau=tau)(s, [t1])['loss_kd'], ref,
                              atol=1e-6)
    # The student matching the ensemble exactly: zero for the means.
    target = (t1 + t2) / 2
    assert EnsembleKD(combine='mean_logit')(target, [t1, t2])['loss_kd'].abs() < 1e-6
    with pytest.raises(ValueError, match='2 teacher_weights for 3 teacher values'):
        m = EnsembleKD(teacher_weights=[1, 1])
        m.build(s, [t1, t2, t1])
    with pytest.raises(ValueError, match=r"combine must be one of \['mean_prob'"):
        EnsembleKD(combine='max')


# ---------------------------------------------------------------------- schedules
def test_loss_weight_schedules():
    warm = build_loss_weight(dict(type='LinearWarmup', value=2.0, warmup=20, by_epoch=True), 'b')
    assert isinstance(warm, LinearWarmup)
    assert [warm.at(t) for t in (1, 10, 20, 30)] == [0.1, 1.0, 2.0, 2.0]
    off = Step(value=1.0, milestones=[5], gamma=0.0)
    assert [off.at(t) for t in (1, 5, 6, 100)] == [1.0, 1.0, 0.0, 0.0]
    steps = Step(value=1.0, milestones=[2, 4], gamma=0.5)
    assert [steps.at(t) for t in (2, 3, 5)] == [1.0, 0.5, 0.25]
    cos = CosineDecay(value=1.0, min_value=0.2, length=10)
    assert cos.at(1) == 1.0 and math.isclose(cos.at(6), 0.6) and cos.at(11) == cos.at(50) == 0.2
    assert math.isclose(CosineDecay(value=1.0).at(3, total=4), 0.5)
    # Driven by the Runner's counters in the message hub (0-based there).
    hub = MessageHub.get_instance('test_loss_weight_schedules')
    hub.update_info('iter', 5)
    assert off.current() == 0.0 and MessageHub.get_current_instance() is hub
    hub.update_info('iter', 4)
    assert off.current() == 1.0
    with pytest.raises(KeyError, match=r"unknown loss_weight schedule 'Linear'.*'LinearWarmup'"):
        build_loss_weight(dict(type='Linear'), 'b')
    with pytest.raises(TypeError, match="Block 'b': loss_weight must be a finite number"):
        build_loss_weight(float('nan'), 'b')
    with pytest.raises(TypeError, match='milestones must be a list'):
        build_loss_weight(dict(type='Step', milestones=5), 'b')


def test_scheduled_weight_is_applied_and_logged(teacher_ckpts):
    cfg = digits_cfg(teacher_ckpts['digits'])
    cfg.blocks.logits.loss_weight = dict(type='Step', value=3.0, milestones=[1], gamma=0.0)
    d = build(cfg)
    hub = MessageHub.get_instance('test_scheduled_weight')
    inputs, samples = batch()
    hub.update_info('iter', 0)
    first = d(inputs, samples, mode='loss')
    hub.update_info('iter', 1)
    second = d(inputs, samples, mode='loss')
    assert first['distill.logits.weight'] == 3.0 and second['distill.logits.weight'] == 0.0
    assert first['distill.logits.loss_kd'] > 0 and second['distill.logits.loss_kd'] == 0


# ---------------------------------------------------------------------- student from teacher
def test_init_student_from_a_teacher(teacher_ckpts, tmp_path):
    # A teacher of the student's own architecture (another random draw).
    ckpt = random_teacher_checkpoint(DIGITS['student'], str(tmp_path / 'same.pth'), seed=3)
    cfg = digits_cfg(teacher_ckpts['digits'])
    cfg.teacher = dict(config=DIGITS['student'], checkpoint=ckpt)
    cfg.init_student_from = dict(teacher='teacher', prefixes=['head'])
    d = build(cfg)
    before = copy.deepcopy(d.student.state_dict())
    d.init_weights()
    teacher = d.teacher.state_dict()
    student = d.student.state_dict()
    assert torch.equal(student['head.fc.weight'], teacher['head.fc.weight'])
    assert not torch.equal(student['backbone.conv1.weight'], teacher['backbone.conv1.weight'])
    assert not torch.equal(student['head.fc.weight'], before['head.fc.weight'])
    # The digits teacher's head is 4x wider than the student's: refused at build, by key.
    cfg = digits_cfg(teacher_ckpts['digits'], init_student_from=dict(teacher='teacher',
                                                                      prefixes=['head']))
    with pytest.raises(ValueError, match=r"1 of another shape \['head.fc.weight: teacher "
                       r'\(10, \d+\) vs student \(10, 32\)'):
        build(cfg)
    cfg.init_student_from = dict(teacher='teacher', prefixes=['neck'])
    with pytest.raises(KeyError, match=r"no weights under 'neck'; its top-level modules are"):
        build(cfg)


# ---------------------------------------------------------------------- through the tools
def test_two_teachers_train_resume_test_and_export_through_the_tools(tmp_path, shapes_root,
                                                                      teacher_ckpts):
    """The multi-task demo config (an mmseg student, an mmseg and an mmdet teacher) through
    tools/train.py, --resume, tools/test.py --teacher NAME and the student export (which
    teachers --teacher accepts: the next test)."""
    from conftest import run_tool, shapes_options, teacher_checkpoint_options
    from mmkd.utils.checkpoint import safe_torch_load
    from test_train_e2e import metric
    opts = ['--cfg-options', *teacher_checkpoint_options(BOTH, teacher_ckpts),
            *shapes_options(shapes_root, det=False), 'default_hooks.logger.interval=1',
            'default_hooks.checkpoint.interval=1', 'train_cfg.val_interval=2']
    work = tmp_path / 'work'
    out = run_tool(['tools/train.py', BOTH, '--work-dir', str(work), *opts,
                    'train_cfg.max_iters=1']).stdout
    for block in ('seg_stages', 'det_stages'):
        assert f'distill.{block}.loss_rtk:' in out
    state = safe_torch_load(str(work / 'iter_1.pth'))['state_dict']
    assert state and all(k.startswith(('student.', 'methods.')) for k in state)
    out = run_tool(['tools/train.py', BOTH, '--work-dir', str(work), '--resume', *opts,
                    'train_cfg.max_iters=2']).stdout
    assert 'resumed epoch: 0, iter: 1' in out and (work / 'iter_2.pth').is_file()
    student_miou = metric(out, 'mIoU')

    test = ['tools/test.py', BOTH, '--work-dir', str(tmp_path / 't'), *opts]
    seg = run_tool([*test[:2], '--teacher', 'seg', *test[2:]]).stdout
    direct = run_tool(['tools/test.py', SEG['teacher'], teacher_ckpts['seg'], '--work-dir',
                       str(tmp_path / 'd'), '--cfg-options',
                       *shapes_options(shapes_root, det=False)]).stdout
    assert metric(seg, 'mIoU') == metric(direct, 'mIoU')

    exported = str(tmp_path / 'student.pth')
    run_tool(['tools/model_converters/extract_student.py', str(work / 'iter_2.pth'), exported])
    plain = run_tool(['tools/test.py', SEG['student'], exported, '--work-dir',
                      str(tmp_path / 'p'), '--cfg-options',
                      *shapes_options(shapes_root, det=False)]).stdout
    assert metric(plain, 'mIoU') == student_miou


def test_test_tool_tests_a_teacher_of_the_students_task_only():
    """tools/test.py --teacher [NAME]: a name is needed with several teachers, a teacher of
    another task is refused with the command that tests it in its own config."""
    import importlib.util

    from conftest import REPO
    spec = importlib.util.spec_from_file_location('mmkd_test_tool', f'{REPO}/tools/test.py')
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    cfg = Config.fromfile(BOTH)
    assert tool.check_teacher_to_test(cfg, BOTH, 'seg') == 'seg'
    with pytest.raises(SystemExit, match=r'is a mmdet model.*tools/test.py '
                       + DET['teacher'].replace('.', r'\.')):
        tool.check_teacher_to_test(cfg, BOTH, 'det')
    with pytest.raises(SystemExit, match=r'several teachers; name one: --teacher \{seg,det\}'):
        tool.check_teacher_to_test(cfg, BOTH, True)
    with pytest.raises(SystemExit, match=r"no such teacher.*\['seg', 'det'\]"):
        tool.check_teacher_to_test(cfg, BOTH, 'depth')
    single = Config.fromfile(SEG['distill'])
    assert tool.check_teacher_to_test(single, SEG['distill'], True) is True
