"""tools/analysis/check_config.py: check a config before training.

The tool's main() runs in this process (one import of torch and the OpenMMLab packages for
every config), on the demo configs with random teachers: every one passes, a broken one fails
with its message and exit status 1, and a two-teacher config shows both teachers' views. The
full-scale configs (ImageNet, COCO, Cityscapes at their training batch size) are checked one
per test, marked slow.
"""
import contextlib
import importlib.util
import io
import json
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from mmkd.distillers import resolve_config_path
from mmkd.utils import infer_dry_run_input_shape
from mmkd.utils.tool_config import find_distiller_configs

from conftest import DEMO, DIGITS, REPO, random_teacher_checkpoint

TOOL_PATH = osp.join(REPO, 'tools', 'analysis', 'check_config.py')
TWO_TEACHERS = osp.join(DEMO, 'digits', 'ens_resnet34-wide+wrn-16-2_resnet18-tiny_digits.py')


def _load_tool():
    spec = importlib.util.spec_from_file_location('check_config', TOOL_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tool = _load_tool()


def full_scale_configs():
    """Every runnable distiller config under configs/ but the demo's."""
    return [p for p in find_distiller_configs(osp.join(REPO, 'configs'), recursive=True)
            if not p.startswith(DEMO + osp.sep)]


def pytest_generate_tests(metafunc):
    # Finding the full-scale configs parses each (~100): only when the slow tests run.
    if 'full_scale_config' in metafunc.fixturenames:
        paths = full_scale_configs() if metafunc.config.getoption('--run-slow') else []
        metafunc.parametrize('full_scale_config', paths,
                             ids=lambda p: osp.relpath(p, osp.join(REPO, 'configs')))


def run(*argv):
    """The tool's exit status and printed output, run in this process."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = tool.main([str(a) for a in argv])
    return status, out.getvalue()


def section(out: str, config: str) -> str:
    """The report of one config in the output of a many-config run."""
    start = out.index(f'Config: {config}\n')
    end = out.find('\nConfig: ', start + 1)
    return out[start:end if end >= 0 else None]


def test_every_demo_config_passes(tmp_path):
    """Every demo distiller config, in one run (the reports' details: the tests below)."""
    status, out = run(DEMO, '--random-teachers', '--json', tmp_path / 'demo.json')
    reports = json.loads((tmp_path / 'demo.json').read_text())
    failed = {r['config']: r.get('error') for r in reports if not r['ok']}
    assert status == 0 and not failed, failed
    demo = find_distiller_configs(DEMO, recursive=True)
    assert sorted(r['config'] for r in reports) == sorted(demo) and len(demo) >= 42
    assert f'{len(demo)} of {len(demo)} configs pass.' in out
    for r in reports:
        assert r['student']['parameters'] > 0 and r['build_s'] >= 0, r['config']
        assert all(t['parameters'] > 0 for t in r['teachers'].values()), r['config']
        for name, block in r['blocks'].items():
            for side in ('student', 'teacher'):  # every value has a shape
                assert any(shapes for _, shapes in block[side]), (r['config'], name, side)
            assert block['method'] and block['loss_weight'], (r['config'], name)


def test_the_report_of_a_two_teacher_config():
    """Both teachers with their views, the points as resolved with their shapes, the method's
    arguments (given and defaults), the loss weight, the counts and the build time."""
    status, out = run(TWO_TEACHERS, '--random-teachers')
    assert status == 0 and out.startswith(f'Config: {TWO_TEACHERS}\n'), out
    for name, source in (('resnet', 'resnet34-wide_digits.py'), ('wrn', 'wrn-16-2_digits.py')):
        lines = out[out.index(f"Teacher {name!r}: ImageClassifier (mmpretrain) from "):]
        assert source in lines.splitlines()[0]
        assert lines.splitlines()[1].startswith('    weights: random (--random-teachers')
        assert lines.splitlines()[2].startswith("    input:   the student's batch as it is "
                                                "(normalisation {'mean': [78.0")
        assert f'{name}:head.fc' in out
    assert 'student  head.fc                      (2, 10)' in out
    assert 'method   EnsembleKD, 0 parameters' in out
    assert "given: combine='mean_logit', tau=4.0" in out
    assert "defaults: teacher_weights=None, loss_name='loss_kd'" in out
    assert 'weight   Constant(value=1.0, by_epoch=False)' in out
    assert 'Parameters: student 44,622, methods 0 (trained); teachers 2,026,292 (frozen)' in out
    assert 'Build (models, checkpoints, dry run): ' in out and out.rstrip().endswith('OK')


def test_wildcards_privileged_inputs_and_templates_in_the_reports():
    configs = (
        osp.join(DEMO, 'shapes_seg', 'rtk-both_deeplabv3_r18-tiny-d8_shapes.py'),
        osp.join(DEMO, 'iqa', 'rkiqt_nar+resnet18-tiny+rednet-tiny_civt-tiny_synthetic-iqa.py'),
        osp.join(DEMO, 'digits', 'letkd-2_resnet34-wide_resnet18-tiny_digits.py'))
    status, out = run(*configs, '--random-teachers')
    assert status == 0, out
    rtk, iqa, letkd = (section(out, c) for c in configs)
    for i in range(1, 5):  # 'backbone.layer*' expanded, in each model
        assert f'backbone.layer{i} ' in rtk and f'det:backbone.layer{i} ' in rtk
    assert "['inputs', 'nar_img'] concatenated on channels" in iqa
    assert "privileged inputs (never given to the student): ['nar_img']" in iqa
    assert letkd.count('templates: random (--random-teachers; the config reads') == 2


CONFIG_ERRORS = {
    'record point': (['--cfg-options', 'model.blocks.logits.student=head.nonexistent'],
                     "KeyError: No module named 'head.nonexistent' in the student (block "
                     "'logits')"),
    'method argument': (['--cfg-options', 'model.blocks.logits.method.tau=0'],
                        "ValueError: Block 'logits': LogitKD argument tau must be positive"),
    'method type': (['--cfg-options', 'model.blocks.logits.method.type=NoSuchKD'],
                    "unknown method type 'NoSuchKD'"),
    'dry-run channels': (['--input-shape', '2,1,16,16'],
                         'The student (ImageClassifier) failed in the dry run'),
}


@pytest.mark.parametrize('problem', list(CONFIG_ERRORS))
def test_a_broken_config_fails_with_its_message(problem):
    options, message = CONFIG_ERRORS[problem]
    status, out = run(DIGITS['distill'], '--random-teachers', *options)
    assert status == 1
    assert message in out and 'FAILED: ' in out, out
    assert 'Traceback' not in out


def test_a_missing_teacher_checkpoint_or_config_fails(tmp_path):
    # Not the demo's teacher path: a clone where the demo has run has that file.
    missing = tmp_path / 'teacher.pth'
    status, out = run(DIGITS['distill'], '--cfg-options', f'model.teacher.checkpoint={missing}')
    assert status == 1 and 'checkpoint' in out and str(missing) in out, out
    status, out = run(tmp_path / 'missing.py')
    assert status == 1 and 'missing.py' in out and 'does not exist' in out


def test_non_finite_dry_run_values_fail(tmp_path):
    """A teacher whose (finite) weights overflow to inf on the dry-run batch."""
    ckpt = random_teacher_checkpoint(DIGITS['teacher'], str(tmp_path / 'teacher.pth'))
    state = torch.load(ckpt)
    state['state_dict'] = {k: v * 1e30 if k.endswith('conv1.weight') else v
                           for k, v in state['state_dict'].items()}
    torch.save(state, ckpt)
    status, out = run(DIGITS['distill'], '--cfg-options', f'model.teacher.checkpoint={ckpt}')
    assert status == 1 and 'Traceback' not in out
    assert "FAILED: NonFiniteError: Block 'logits': the teacher (ImageClassifier) at 'head.fc' " \
        'gives ' in out and 'in the dry run on a finite random batch of shape (2, 3, 16, 16)' \
        in out, out


def test_a_teacher_failing_on_a_too_small_dry_run_is_named_with_the_batch(tmp_path):
    """A stride-32 zoo backbone (mmpretrain's ConvNeXt: its last downsampling needs a 2x2 map)
    at the digits' 16x16: the message names the teacher and the dry-run batch and says what to
    set; the report lists the teachers of the config that failed."""
    config = tmp_path / 'convnext_teacher_16px.py'
    config.write_text(
        f"_base_ = {DIGITS['distill']!r}\n"
        "model = dict(teacher=dict(_delete_=True, checkpoint='work_dirs/none.pth', model=dict(\n"
        "    type='mmpretrain.ImageClassifier',\n"
        "    backbone=dict(type='mmpretrain.ConvNeXt', arch='atto'),\n"
        "    head=dict(type='mmpretrain.LinearClsHead', num_classes=10, in_channels=320))))\n")
    status, out = run(config, '--random-teachers')
    assert status == 1 and 'Traceback' not in out
    assert "Teacher 'teacher': mmpretrain.ImageClassifier" in out
    assert ('FAILED: RuntimeError: The teacher (ImageClassifier) failed in the dry run' in out
            and 'random batch of shape (2, 3, 16, 16) (model.dry_run_input_shape)' in out
            and 'set model.dry_run_input_shape to the shape of a real training batch' in out), out
    status, out = run(config, '--random-teachers', '--input-shape', '64,64')
    assert status == 0 and 'Dry-run batch: (2, 3, 64, 64) (--input-shape)' in out, out


def test_training_input_shape_reads_what_the_training_batches_are():
    """Not the test pipeline: large-scale jitter pads every training batch to 1024x1024 (batch
    augments), keep-ratio resizing is padded to the size divisor, a list of scales gives its
    largest, mmseg crops to the preprocessor's size."""
    lsj = Config.fromfile(
        resolve_config_path('mmdet::atss/atss_r50_fpn_8xb8-amp-lsj-200e_coco.py'))
    assert tool.training_input_shape(lsj) == (
        (2, 3, 1024, 1024), 'data_preprocessor batch_augments BatchFixedSizePad(size=(1024, '
        '1024))')
    assert infer_dry_run_input_shape(lsj)[0] == (2, 3, 800, 1333)  # what train.py infers

    def cfg(pipeline, **preprocessor):
        return Config(dict(model=dict(type='mmkd.Distiller', student=dict(
            data_preprocessor=preprocessor)), train_dataloader=dict(dataset=dict(
                type='RepeatDataset', dataset=dict(pipeline=pipeline)))))
    resize = [dict(type='LoadImageFromFile'), dict(type='Resize', scale=(1333, 800))]
    assert tool.training_input_shape(cfg(resize, pad_size_divisor=32))[0] == (2, 3, 800, 1344)
    choice = [dict(type='RandomChoiceResize', scales=[(1333, 640), (1333, 800)])]
    assert tool.training_input_shape(cfg(choice))[0] == (2, 3, 800, 1333)
    crop = [dict(type='RandomResize', scale=(2048, 1024)),
            dict(type='RandomCrop', crop_size=(512, 1024))]
    assert tool.training_input_shape(cfg(crop))[0] == (2, 3, 512, 1024)
    assert tool.training_input_shape(cfg([], size=(769, 769)))[0] == (2, 3, 769, 769)
    assert tool.training_input_shape(
        cfg([dict(type='RandomResizedCrop', scale=224)], mean=[0] * 6, std=[1] * 6))[0] == \
        (2, 6, 224, 224)
    assert tool.training_input_shape(cfg([dict(type='PackInputs')])) is None


@pytest.mark.slow
def test_full_scale_config_at_its_training_batch(full_scale_config):
    """Random teachers, the dry run at the training batch (tens of seconds for a COCO or
    Cityscapes pair on a CPU). test_every_demo_config_passes covers the same code on the
    demo configs."""
    status, out = run(full_scale_config, '--random-teachers', '--input-shape', 'train')
    assert status == 0, out
    assert '(the training batch: ' in out and out.rstrip().endswith('OK'), out
