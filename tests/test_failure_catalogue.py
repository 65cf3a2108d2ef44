"""A catalogue of bad input: each case is an input, the exact error class it must raise, and
the words the message must contain (the block, the model, the point, the valid choices).

The cases build the digits distiller in-process (a second each); the tool-level cases (unsafe
checkpoints, damaged checkpoints, testing a checkpoint with the wrong config) run the
command-line tools in tests/test_safe_loading.py and tests/test_train_e2e.py.
"""
import math

import pytest
import torch

from mmkd.distillers import NonFiniteError
from mmkd.recorders import RecordPointError

from conftest import DIGITS, batch, build, digits_cfg, random_teacher_checkpoint


def block(student='head.fc', teacher='head.fc', method=dict(type='LogitKD'), **extra):
    return dict(b=dict(student=student, teacher=teacher, method=method, **extra))


def huge_teacher_checkpoint(path):
    """Finite weights whose activations overflow to inf (passes the checkpoint check)."""
    random_teacher_checkpoint(DIGITS['teacher'], path)
    ckpt = torch.load(path, weights_only=True)
    for k, v in ckpt['state_dict'].items():
        if k.endswith('conv1.weight') or k.endswith('fc.weight'):
            v.fill_(1e30)
    torch.save(ckpt, path)
    return path


def nan_teacher_checkpoint(path):
    random_teacher_checkpoint(DIGITS['teacher'], path)
    ckpt = torch.load(path, weights_only=True)
    ckpt['state_dict']['backbone.layer2.0.conv1.weight'][0, 0, 0, 0] = math.nan
    torch.save(ckpt, path)
    return path


# (id, overrides of the digits distiller config, error class, words the message must contain)
CATALOGUE = [
    ('method-unknown-argument',
     dict(blocks=block(method=dict(type='LogitKD', temperature=4.0))),
     TypeError, ["Block 'b'", 'LogitKD', "['temperature']", "'tau'", "'loss_name'"]),
    ('method-unknown-type',
     dict(blocks=block(method=dict(type='KDD'))),
     KeyError, ["Block 'b'", "'KDD'", 'LogitKD', 'DiffKD', 'FeatureMSE']),
    ('method-not-a-method',
     dict(blocks=block(method=dict(type='ResNet'))),
     KeyError, ["Block 'b'", "'ResNet'", 'Valid methods']),
    ('method-wrong-kind',
     dict(blocks=block(method=3)),
     TypeError, ["Block 'b'", '`method`', 'dict(type=', 'LogitKD']),
    ('method-bad-value',
     dict(blocks=block(method=dict(type='FeatureMSE', projector='sometimes'))),
     ValueError, ["Block 'b'", 'FeatureMSE', "'sometimes'", "'auto'"]),
    ('loss-weight-string',
     dict(blocks=block(loss_weight='abc')),
     TypeError, ["Block 'b'", 'loss_weight', "'abc'", 'str']),
    ('loss-weight-nan',
     dict(blocks=block(loss_weight=math.nan)),
     TypeError, ["Block 'b'", 'loss_weight', 'nan']),
    ('block-unknown-key',
     dict(blocks=block(weight=1.0)),
     KeyError, ["Block 'b'", "['weight']", 'loss_weight']),
    ('block-not-a-dict',
     dict(blocks=dict(b='LogitKD')),
     TypeError, ["Block 'b'", 'dict(student=']),
    ('level-count-mismatch',
     dict(blocks=block('backbone.layer*', 'backbone.layer4', dict(type='FeatureMSE'))),
     ValueError, ["Block 'b'", 'FeatureMSE', 'student gives 4 levels', 'teacher gives 1']),
    ('index-out-of-range',
     dict(blocks=block('backbone[0]', 'backbone[5]', dict(type='FeatureMSE'))),
     RecordPointError, ["Block 'b'", 'teacher', 'ImageClassifier', "'backbone[5]'",
                        'index [5]', 'tuple of length 1', 'valid indices 0..0']),
    ('index-into-a-tensor',
     dict(blocks=block('head.fc[0]', 'head.fc')),
     RecordPointError, ["Block 'b'", 'student', "'head.fc[0]'", 'Tensor of shape',
                        'not a tuple/list']),
    ('unknown-module',
     dict(blocks=block('head.fcc')),
     KeyError, ["'head.fcc'", "student (block 'b')", "Closest names: ['head.fc'"]),
    ('nonfinite-policy',
     dict(nonfinite_loss='ignore'),
     ValueError, ['nonfinite_loss', "'ignore'", "['raise', 'skip']"]),
]


@pytest.mark.parametrize('overrides,error,words', [c[1:] for c in CATALOGUE],
                         ids=[c[0] for c in CATALOGUE])
def test_bad_config_names_block_and_choices(teacher_ckpts, overrides, error, words):
    with pytest.raises(error) as e:
        build(digits_cfg(teacher_ckpts['digits'], **overrides))
    assert type(e.value) is error, f'{type(e.value).__name__}: {e.value}'
    for word in words:
        assert word in str(e.value), f'{word!r} not in: {e.value}'


def test_method_shorthand_is_a_type_name(teacher_ckpts):
    d = build(digits_cfg(teacher_ckpts['digits'], blocks=block(method='LogitKD')))
    assert type(d.methods['b']).__name__ == 'LogitKD'


def test_nan_teacher_weights_stop_at_build(teacher_ckpts, tmp_path):
    ckpt = nan_teacher_checkpoint(str(tmp_path / 'nan.pth'))
    with pytest.raises(FloatingPointError) as e:
        build(digits_cfg(ckpt))
    for word in ('teacher', 'nan.pth', 'NaN/inf', 'backbone.layer2.0.conv1.weight'):
        assert word in str(e.value)


def test_nonfinite_activations_in_the_dry_run_name_block_model_and_point(tmp_path):
    ckpt = huge_teacher_checkpoint(str(tmp_path / 'huge.pth'))
    with pytest.raises(NonFiniteError) as e:
        build(digits_cfg(ckpt))
    for word in ("Block 'logits'", 'the teacher (ImageClassifier)', "'head.fc'", 'dry run',
                 'huge.pth'):
        assert word in str(e.value), f'{word!r} not in: {e.value}'


def test_too_small_dry_run_fails_on_the_first_batch_naming_the_shapes(teacher_ckpts):
    """With a 1x1 dry run DiffKD builds its vector (MLP) branch for what are maps in training."""
    d = build(digits_cfg(teacher_ckpts['digits'], dry_run_input_shape=(2, 3, 1, 1), blocks=dict(
        feat=dict(student='backbone.layer4', teacher='backbone.layer4', method='DiffKD'))))
    with pytest.raises(ValueError) as e:
        d(*batch(size=16), mode='loss')
    for word in ("Block 'feat' (DiffKD)", 'student', '(4, 32, 2, 2)', '(2, 32, 1, 1)',
                 'dry_run_input_shape=(2, 3, 1, 1)'):
        assert word in str(e.value), f'{word!r} not in: {e.value}'
    # The same model with a dry run of the real size trains.
    d = build(digits_cfg(teacher_ckpts['digits'], dry_run_input_shape=(2, 3, 16, 16), blocks=dict(
        feat=dict(student='backbone.layer4', teacher='backbone.layer4', method='DiffKD'))))
    assert torch.isfinite(d(*batch(size=16), mode='loss')['distill.feat.loss_kd'])


def test_nonfinite_input_stops_training_naming_term_iteration_and_values(teacher_ckpts):
    from mmengine.logging import MessageHub
    d = build(digits_cfg(teacher_ckpts['digits'])).train()
    MessageHub.get_current_instance().update_info('iter', 6)
    inputs, samples = batch(size=16)
    inputs[1, 0, 3, 3] = math.nan
    with pytest.raises(NonFiniteError) as e:
        d(inputs, samples, mode='loss')
    for word in ('iteration 7', 'student.loss = NaN', 'distill.logits.loss_kd = NaN',
                 'Input batch: contains NaN', "teacher's recorded values: non-finite at "
                 "['head.fc']", "nonfinite_loss='skip'"):
        assert word in str(e.value), f'{word!r} not in: {e.value}'
