"""MMRazor distillation checkpoints into mmkd (issue 31 item 2): a synthetic checkpoint in
MMRazor's layout (the student under ``architecture.``, the teacher under ``teacher.``, a
connector under ``distiller.connectors.<name>.``, with a Runner's ``meta``, ``optimizer`` and
``message_hub``) converts to a plain student and to an mmkd training checkpoint that load
strictly and predict as the original student; unplaceable keys and bad files are refused."""
import os.path as osp

import numpy as np
import pytest
import torch
import torch.nn as nn
from conftest import DIGITS, batch, build, digits_cfg
from mmengine.logging import MessageHub
from mmengine.runner.checkpoint import load_checkpoint

from mmkd.converters.mmrazor_checkpoint import convert_checkpoint
from mmkd.distillers import build_model_in_scope, load_checkpoint_strict, load_model_config, \
    without_pretrained
from mmkd.utils import UnsafeCheckpointError
from mmkd.utils.checkpoint import safe_torch_load
from mmkd.utils.checkpoint_file import DamagedCheckpointError

# The digits demo's hint block: the student's last stage, 1x1 conv to the teacher's width,
# the module an MMRazor ConvModuleConnector's weights go into.
BLOCKS = dict(feat=dict(student='backbone.layer4', teacher='backbone.layer4',
                        method=dict(type='FeatureMSE', projector='always')))
CONNECTOR = 'methods.feat.connectors.0'
EVIL_CFG = "import os\nos.system('echo converted-and-ran')\nmodel = dict()"


def plain_model(config, seed):
    torch.manual_seed(seed)
    cfg, scope = load_model_config(config)
    return build_model_in_scope(without_pretrained(cfg), scope).eval()


def randomise(model, seed):
    """Every parameter and buffer random (BN statistics too): a load that missed one shows."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                t.copy_(torch.rand(t.shape, generator=gen) + 0.5 if 'running_var' in name
                        else torch.randn(t.shape, generator=gen) * 0.3)
    return model


@pytest.fixture(scope='module')
def models(tmp_path_factory):
    # The teacher's random weights are the distiller's teacher checkpoint too (as
    # conftest.random_teacher_checkpoint writes it; the session fixture teacher_ckpts would
    # also build the detection and segmentation teachers).
    teacher = plain_model(DIGITS['teacher'], 3)
    teacher_ckpt = str(tmp_path_factory.mktemp('teacher') / 'teacher.pth')
    torch.save(dict(state_dict=teacher.state_dict(), meta=dict()), teacher_ckpt)
    distiller = build(digits_cfg(teacher_ckpt, blocks=BLOCKS)).eval()
    weight = distiller.state_dict()[f'{CONNECTOR}.weight']
    connector = nn.Conv2d(weight.shape[1], weight.shape[0], kernel_size=1)  # student -> teacher
    return dict(student=randomise(plain_model(DIGITS['student'], 1), 2), teacher=teacher,
                connector=randomise(connector, 4), distiller=distiller)


def mmrazor_checkpoint(models, path, extra=None):
    """A Runner checkpoint of an MMRazor SingleTeacherDistill, as MMRazor saves it."""
    state = {f'architecture.{k}': v for k, v in models['student'].state_dict().items()}
    state.update({f'teacher.{k}': v for k, v in models['teacher'].state_dict().items()})
    state.update({f'distiller.connectors.loss_s4.{k}': v
                  for k, v in models['connector'].state_dict().items()})
    state.update(extra or {})
    hub = MessageHub.get_instance('mmrazor_ckpt_test')
    hub.update_scalar('train/loss', np.float64(0.5))
    torch.save(dict(meta=dict(epoch=3, iter=30, seed=np.int64(7), cfg=EVIL_CFG,
                              dataset_meta=dict(classes=tuple('0123456789'))),
                    state_dict=state, message_hub=hub.state_dict(),
                    optimizer=dict(state={}, param_groups=[dict(lr=0.1, params=[0, 1])]),
                    param_schedulers=[dict(last_epoch=3)]), path)
    return str(path)


def test_student_only_loads_into_the_plain_student_and_predicts_identically(
        models, tmp_path, capfd):
    src = mmrazor_checkpoint(models, tmp_path / 'razor.pth')
    dst = str(tmp_path / 'student.pth')
    report = convert_checkpoint(src, dst, student_only=True)
    student = models['student']
    assert report['placed'] == {f'architecture.{k}': k for k in student.state_dict()}
    assert report['unplaced'] == []
    assert report['dropped_teacher'] == [f'teacher.{k}' for k in models['teacher'].state_dict()]
    assert report['dropped'] == ['distiller.connectors.loss_s4.weight',
                                 'distiller.connectors.loss_s4.bias']
    assert set(report['dropped_entries']) == {'message_hub', 'optimizer', 'param_schedulers',
                                              'meta.epoch', 'meta.iter', 'meta.seed',
                                              'meta.cfg'}
    out = safe_torch_load(dst)
    assert set(out) == {'state_dict', 'meta'}  # extract_student.py's format
    assert out['meta']['mmkd_source_checkpoint'] == osp.abspath(src)
    assert out['meta']['dataset_meta']['classes'][3] == '3'
    assert 'converted-and-ran' not in capfd.readouterr().out  # the config text never runs

    fresh = plain_model(DIGITS['student'], 5)
    inputs, _ = batch(size=16)
    with torch.no_grad():
        expected = student(inputs, mode='tensor')
        assert not torch.allclose(fresh(inputs, mode='tensor'), expected)
        load_checkpoint_strict(fresh, dst, 'student')  # every key, every shape
        assert torch.equal(fresh(inputs, mode='tensor'), expected)
    mmengine_loaded = plain_model(DIGITS['student'], 6)
    load_checkpoint(mmengine_loaded, dst, strict=True)  # what the base config's load_from does
    with torch.no_grad():
        assert torch.equal(mmengine_loaded(inputs, mode='tensor'), expected)


def test_training_checkpoint_loads_into_the_distiller_with_the_connector(models, tmp_path):
    src = mmrazor_checkpoint(models, tmp_path / 'razor.pth')
    dst = str(tmp_path / 'mmkd.pth')
    report = convert_checkpoint(src, dst, connector_map={'loss_s4': CONNECTOR})
    assert report['placed']['architecture.backbone.conv1.weight'] == \
        'student.backbone.conv1.weight'
    assert report['placed']['distiller.connectors.loss_s4.weight'] == f'{CONNECTOR}.weight'
    assert report['unplaced'] == [] and report['dropped'] == []
    assert all(k.startswith('teacher.') for k in report['dropped_teacher'])
    state = safe_torch_load(dst)['state_dict']
    assert not any(k.startswith(('teacher.', 'architecture.', 'distiller.')) for k in state)

    distiller = models['distiller']
    inputs, _ = batch(size=16)
    with torch.no_grad():
        assert not torch.allclose(distiller(inputs, mode='tensor'),
                                  models['student'](inputs, mode='tensor'))
    load_checkpoint(distiller, dst, strict=True)  # student.* and methods.* keys: all, exactly
    with torch.no_grad():
        assert torch.equal(distiller(inputs, mode='tensor'),
                           models['student'](inputs, mode='tensor'))
    assert torch.equal(distiller.methods.feat.connectors[0].weight, models['connector'].weight)
    # The same with the connector named by its full MMRazor key prefix.
    report = convert_checkpoint(src, dst, connector_map={
        'distiller.connectors.loss_s4.': CONNECTOR + '.'})
    assert report['placed']['distiller.connectors.loss_s4.bias'] == f'{CONNECTOR}.bias'


def test_unplaced_keys_are_refused_by_name_and_nothing_is_written(models, tmp_path):
    unknown = {f'distiller.distill_losses.loss_crd.memory_{i}': torch.zeros(2) for i in range(12)}
    src = mmrazor_checkpoint(models, tmp_path / 'razor.pth', extra=unknown)
    dst = tmp_path / 'out.pth'
    with pytest.raises(ValueError) as e:  # 12 unknown keys + the unmapped connector's 2
        convert_checkpoint(src, str(dst))
    for word in ('14 key(s)', 'distiller.distill_losses.loss_crd.memory_0', ' ...',
                 'connector_map', 'allow_unplaced', 'Nothing was written'):
        assert word in str(e.value), (word, str(e.value))
    assert 'memory_11' not in str(e.value)  # ten named
    assert not dst.exists() and not list(tmp_path.glob('.out.pth*'))

    report = convert_checkpoint(src, str(dst), connector_map={'loss_s4': CONNECTOR},
                                allow_unplaced=True)
    assert report['unplaced'] == list(unknown)
    assert not any('distill_losses' in k for k in safe_torch_load(str(dst))['state_dict'])

    with pytest.raises(ValueError) as e:  # a connector the checkpoint does not have
        convert_checkpoint(src, str(tmp_path / 'x.pth'), connector_map={'loss_s3': CONNECTOR})
    assert "'distiller.connectors.loss_s3.'" in str(e.value) and "['loss_s4']" in str(e.value)
    with pytest.raises(ValueError, match="'methods.<block>.<module>'"):
        convert_checkpoint(src, str(tmp_path / 'x.pth'),
                           connector_map={'loss_s4': 'student.backbone'})
    assert not (tmp_path / 'x.pth').exists()


def test_other_algorithm_parts(tmp_path):
    """The algorithm's data preprocessor is the student's (saved twice: one copy kept);
    DataFreeDistillation's ``teachers.<name>.*`` are teachers; its generator has no place."""
    one, two = torch.ones(3), torch.full((3,), 2.0)
    src = str(tmp_path / 'razor.pth')
    torch.save(dict(state_dict={
        'architecture.w': one, 'architecture.data_preprocessor.mean': one,
        'data_preprocessor.mean': one.clone(), 'data_preprocessor.extra': two,
        'teachers.res34.w': two, 'generator.fc.weight': two}, meta=dict()), src)
    report = convert_checkpoint(src, str(tmp_path / 'out.pth'), allow_unplaced=True)
    assert report == dict(
        placed={'architecture.w': 'student.w',
                'architecture.data_preprocessor.mean': 'student.data_preprocessor.mean',
                'data_preprocessor.extra': 'student.data_preprocessor.extra'},
        unplaced=['generator.fc.weight'], dropped_teacher=['teachers.res34.w'],
        dropped=['data_preprocessor.mean'], dropped_entries=[])
    state = dict(state_dict={'architecture.data_preprocessor.mean': one,
                             'data_preprocessor.mean': two})
    torch.save(state, src)  # two different preprocessors: not silently one of them
    with pytest.raises(ValueError, match=r"1 key\(s\).*\['data_preprocessor.mean'\]"):
        convert_checkpoint(src, str(tmp_path / 'out2.pth'))


class NotAllowed:
    def __reduce__(self):
        return (print, ('ran',))


@pytest.mark.parametrize('content,error,words', [
    ([torch.ones(2)], TypeError, ['holds a list', 'not an MMRazor checkpoint']),
    (dict(model={'w': torch.ones(1)}), ValueError, ['no "state_dict"', "['model']"]),
    (dict(state_dict={'student.w': torch.ones(1)}), ValueError,
     ['no "architecture.*" keys', 'mmkd distillation checkpoint already']),
    (dict(state_dict={'architecture.w': torch.ones(1)}, hook=NotAllowed()),
     UnsafeCheckpointError, ['Refusing to load', 'builtins.print']),
    ('truncated', DamagedCheckpointError, ['truncated']),
], ids=['a list', 'no state_dict', 'an mmkd checkpoint', 'code', 'truncated'])
def test_bad_files_are_refused_naming_the_file(content, error, words, tmp_path, capfd):
    src = tmp_path / 'bad.pth'
    if content == 'truncated':
        torch.save(dict(state_dict={'architecture.w': torch.ones(1000)}), src)
        src.write_bytes(src.read_bytes()[:600])
    else:
        torch.save(content, src)
    dst = tmp_path / 'out.pth'
    with pytest.raises(error) as e:
        convert_checkpoint(str(src), str(dst))
    assert type(e.value) is error
    for word in [str(src)] + words:
        assert word in str(e.value), (word, str(e.value))
    assert not dst.exists() and 'ran' not in capfd.readouterr().out
