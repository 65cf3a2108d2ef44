"""A catalogue of bad input: each case is an input, the exact error class it must raise (or what
must happen instead), and the words the message must contain (the block, the model, the
teacher, the file or row, the point, the setting to change, the valid choices).

Sections, in this order:

- **Configs** (the original catalogue): each case builds the digits distiller in-process.
- **Checkpoints, URLs, export, resume** (issue 28 items 1, 2, 3, 4, 6, 8, 14): code in a
  checkpoint's config text is never run by export; zip bombs are refused before inflating;
  a URL that never answers times out naming the teacher and the URL; auto-resume takes only
  Runner checkpoints; a corrupted record, a truncated, empty, list, tensor, directory or device
  "checkpoint" is refused naming the teacher and the file; resume refuses a changed objective.
- **One run per work dir, skip limits** (items 7, 10).
- **Demo bookkeeping** (item 5): kills at every write leave nothing that a later run reuses
  wrongly (here the expected outcome is a line and a retrain, not an error).
- **Arguments** (item 9): every method and schedule argument has a declared type and range.
- **Messages that hide the cause** (items 12, 13, 16, and AT's shapes).
- **IQA readers** (items 11, 15): scores off the scale or not finite, bad CSV rows and MAT
  files, missing images and references, each naming the file, the row and the setting.
- **Kinds of teacher** (issue 32), among the config cases: the student itself
  (``teachers.self``), a learner that is not a trainable teacher, a frozen teacher without
  weights; and the optimiser parts of ``mmkd.DistillerOptimWrapperConstructor``. The
  data-free distiller's refusals (a training batch of images where latent seeds belong, one
  optimiser where the student and the generator each need theirs, bad generator settings,
  ``mmkd.LatentDataset`` arguments) are in tests/test_data_free.py.
- **The agreement metric's own teachers** (issue 33): ``mmkd.TeacherStudentAgreement(
  teachers=dict(t=dict(config=..., checkpoint=...)))`` builds and loads each teacher at its
  first batch with the distiller's builder and strict, safe loader: a missing or mismatched
  checkpoint, NaN weights, a missing config, a model without a data_preprocessor, and bad
  metric arguments are each refused naming the teacher (and the file or the setting). An
  unknown name in the distiller's ``val_teachers`` is a config case.
- **CKA points** (issue 33): ``tools/analysis/cka.py``'s ``--student-points`` /
  ``--teacher-points`` (the blocks' point syntax typed on a command line) and the values they
  record: an unknown module (the closest names and the config's block points), a wildcard that
  matches nothing, an unknown teacher (the teachers and ``self``), an unparsable point, a value
  that is not batch-first, an unknown estimator or kernel; each refused naming the option, the
  point and the valid choices, in tests/test_cka.py
  (``test_bad_point_names_are_refused_with_the_valid_choices``,
  ``test_point_features_split_tuples_and_refuse_what_is_not_batch_first``).
- **Pretrained backbones of the shapes variant** (issue 33): the variant's students and
  teachers read a pretrained backbone (``init_cfg=dict(type='Pretrained', ...)``, through the
  same safe loading as every checkpoint), written only by tools/demo.py's fingerprinted,
  atomic ``ensure_teacher``; a variant teacher's fingerprint holds the SHA-256 of the backbone
  file, so a replaced or retrained backbone retrains the teacher instead of reusing it
  (tests/test_pretrained_variant.py, ``test_grid_pretrains_once_and_passes_the_backbones_on``).
- **Instruments over a grid** (issue 33): ``tools/analysis/instruments.py WORK_ROOT`` reads only
  the run folders under the root the user names: each run's config (the one MMEngine dumped,
  loaded as a config exactly as ``tools/test.py`` would load it; the user named the folder),
  ``last_checkpoint`` (at most 4,096 characters, one path, which must be a file: refused naming
  the run otherwise) and, with ``--table-only``, its own ``instruments.json`` (``json.load``,
  never code); a method or seed without a run is refused naming the folder
  (tests/test_instruments.py, ``test_instruments_names_a_missing_run``).
- **Attention maps** (issue 33): ``tools/analysis/attention_maps.py`` reads CHECKPOINT through
  the shared loader (``mmkd.analysis.load_student_checkpoint``, safe loading): a checkpoint
  without the block's ``methods.<block>.*`` keys (a plain student's) is refused naming the file
  and the keys; a ``--block`` that does not exist, or whose method has no attention read-out,
  is refused listing the blocks that have one (tests/test_attention_maps.py).
- **Training logs** (issue 29): ``tools/analysis/plot_curves.py`` reads ``scalars.json`` one
  line at a time with ``json.loads`` (never code); a damaged line before the end stops it
  naming the file and the line, a half-written last line is skipped. Package metafiles are
  parsed by MMEngine as before; mmkd only caches the result (tests/test_configs.py).

- **Teacher caches** (issue 34): a cache folder (``teachers.<name>.cache``, written by
  ``tools/cache_teacher.py``) is read as data only: ``meta.json`` with ``json.load`` (at most
  64 MiB), the per-rank index with ``numpy.load(allow_pickle=False)``, the values through
  ``numpy.memmap`` after every file's size is checked against ``meta.json``, and each batch's
  rows against their CRC-32 when read. A folder that is missing, incomplete (no
  ``meta.json``), not a cache, too large, truncated, overwritten or built for another world
  size, teacher or batches is refused naming the file or the keys that differ (config cases
  here; the rest in tests/test_teacher_cache.py, ``test_damaged_or_incomplete_caches_are_
  detected``, ``test_a_cache_for_other_batches_is_refused_naming_what_differs``).

- **Sharded training** (issue 34): ``model_wrapper_cfg=dict(type='mmkd.DistillerFSDP', ...)``
  with an unknown key (the valid keys), an unknown ``shard_units`` (the valid values), class
  names no module has (the classes present), a non-bool ``reshard_after_forward``, a model
  that is not a distiller or a distiller with its own train step (the data-free one: use
  DDP), no process group (launch with tools/dist_train.sh), training without
  ``mmkd.DistillerFSDPHook`` (the line to add) and initialising weights after sharding; each
  refused naming the setting, in tests/test_fsdp.py
  (``test_config_errors_name_the_valid_choices``, ``test_needs_a_process_group``,
  ``test_train_step_without_hook_and_init_after_sharding_refused``).

Tool-level cases of the same kinds, which need a command-line run, are in
tests/test_safe_loading.py (code-carrying checkpoints on every scheme) and
tests/test_train_e2e.py (tools/test.py on a corrupted checkpoint, --resume of a truncated one or
under a changed objective).
"""

import copy
import csv
import importlib.util
import inspect
import json
import math
import os
import os.path as osp
import runpy
import socket
import subprocess
import sys
import threading
import time
import zipfile
import zlib

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MessageHub
from mmengine.optim import build_optim_wrapper
from mmengine.runner.checkpoint import _load_checkpoint
from scipy.io import loadmat, savemat

import mmkd  # noqa: F401  (safe, checked checkpoint loading)
from mmkd.datasets import KADID10kDataset, KonIQ10kDataset, LIVEChallengeDataset, LIVEDataset
from mmkd.distillers import NonFiniteError
from mmkd.distillers.teacher_cache import TeacherCacheError
from mmkd.hooks.run_record import check_data_only
from mmkd.methods import AT
from mmkd.recorders import RecordPointError
from mmkd.utils import find_resumable_checkpoint
from mmkd.utils.checkpoint import safe_torch_load
from mmkd.utils.checkpoint_file import (CheckpointDownloadError, DamagedCheckpointError,
                                        OversizedCheckpointError)
from mmkd.utils.resume import checkpoint_damage
from mmkd.utils.work_dir_lock import LOCK_FILE, WorkDirInUseError, lock_work_dir

from conftest import (DIGITS, REPO, batch, build, digits_cfg, random_teacher_checkpoint,
                      run_tool)
from test_iqa import make_live_fixture


def assert_words(error, error_class, words):
    assert type(error) is error_class, f'{type(error).__name__}: {error}'
    for word in words:
        assert word in str(error), f'{word!r} not in: {error}'


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
CONFIG_CASES = [
    ('val-teachers-unknown',  # issue 33: the teachers the agreement metric compares with
     dict(val_teachers=['tecaher']),
     KeyError, ['val_teachers', "'tecaher'", "['teacher']", 'True']),
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
    ('block-name-with-loss',
     dict(blocks=dict(kd_loss=dict(student='head.fc', teacher='head.fc', method='LogitKD'))),
     ValueError, ["Block 'kd_loss'", "without 'loss'", 'distill.<name>.<term>', 'rename']),
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
    # Kinds of teacher (issue 32): the student itself, trainable teachers.
    ('self-teacher-with-a-config',
     dict(teacher=None, teachers=dict(self=dict(config='x.py', checkpoint='x.pth'))),
     KeyError, ['teachers.self is the student itself', "['detach']"]),
    ('self-teacher-detach-not-a-bool',
     dict(teacher=None, teachers=dict(self=dict(detach='yes')),
          blocks=block(teacher='self:head.fc')),
     TypeError, ['teachers.self.detach', "'yes'"]),
    ('learner-is-a-frozen-teacher',
     dict(blocks=block(student='teacher:head.fc')),
     KeyError, ["Block 'b'", "'teacher'", 'not a trainable teacher', 'trainable=True']),
    ('unknown-teacher-name-in-point',
     dict(blocks=block(teacher='peer:head.fc')),
     KeyError, ["Block 'b'", "'peer'", "['teacher']", 'self']),
    ('frozen-teacher-without-weights',
     dict(teacher=dict(config=DIGITS['teacher'], checkpoint=None)),
     ValueError, ['checkpoint=None is only for a trainable teacher']),
]


@pytest.mark.parametrize('overrides,error,words', [c[1:] for c in CONFIG_CASES],
                         ids=[c[0] for c in CONFIG_CASES])
def test_bad_config_names_block_and_choices(teacher_ckpts, overrides, error, words):
    with pytest.raises(error) as e:
        build(digits_cfg(teacher_ckpts['digits'], **overrides))
    assert_words(e.value, error, words)


def test_optimiser_parts_name_the_valid_parts(teacher_ckpts):
    """One optimiser per part (mmkd.DistillerOptimWrapperConstructor): a part the distiller
    lacks, or a missing one, is refused naming the distiller's parts."""
    d = build(digits_cfg(teacher_ckpts['digits']))
    sgd = dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.1))
    with pytest.raises(KeyError) as e:
        build_optim_wrapper(d, dict(constructor='mmkd.DistillerOptimWrapperConstructor',
                                    student=sgd, generator=sgd))
    assert_words(e.value, KeyError, ["unknown part(s) ['generator']", "parts are ['student']"])
    with pytest.raises(ValueError) as e:
        build_optim_wrapper(d, dict(constructor='mmkd.DistillerOptimWrapperConstructor',
                                    student=sgd, paramwise_cfg=dict(norm_decay_mult=0.0)))
    assert_words(e.value, ValueError, ['paramwise_cfg', 'optim_wrapper.student.paramwise_cfg'])


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


# ==============================================================================================
# Checkpoints, URLs, export and resume (issue 28: items 1, 2, 3, 4, 6, 8, 14)
# Checkpoints that must not load, URLs that must not hang, files export must not execute.
# ==============================================================================================
EXPORT = osp.join(REPO, 'tools', 'model_converters', 'extract_student.py')


# ---------------------------------------------------------------------- bad files
def _zip_records(path):
    with zipfile.ZipFile(path) as z:
        return [(info, z.read(info.filename)) for info in z.infolist()]


def zip_bomb(src, dst, inflated=256 << 20):
    """``src`` (a torch checkpoint) with its first tensor record replaced by ``inflated`` zero
    bytes, deflated: a file of a few hundred KB that declares ``inflated`` bytes."""
    records = _zip_records(src)
    with zipfile.ZipFile(dst, 'w') as z:
        for info, data in records:
            if '/data/' in info.filename and not info.filename.endswith('serialization_id'):
                with z.open(zipfile.ZipInfo(info.filename), 'w', force_zip64=True) as f:
                    z_info = f._zinfo
                    z_info.compress_type = zipfile.ZIP_DEFLATED
                    f._compressor = zlib.compressobj(1, zlib.DEFLATED, -15)
                    zero = bytes(8 << 20)
                    for _ in range(inflated // len(zero)):
                        f.write(zero)
                inflated = 0  # one record
            else:
                z.writestr(info, data)
    return dst


def truncated(src, dst):
    data = open(src, 'rb').read()
    open(dst, 'wb').write(data[:len(data) // 2])
    return dst


def corrupted(src, dst):
    """``src`` with one byte of its largest tensor record flipped: the archive is intact, the
    record fails its CRC."""
    data = bytearray(open(src, 'rb').read())
    with zipfile.ZipFile(src) as z:
        info = max(z.infolist(), key=lambda i: i.file_size)
        with open(src, 'rb') as f:  # the record's data follow its local header
            f.seek(info.header_offset + 26)
            name_len, extra_len = int.from_bytes(f.read(2), 'little'), int.from_bytes(
                f.read(2), 'little')
    start = info.header_offset + 30 + name_len + extra_len
    data[start + info.file_size // 2] ^= 0xFF
    open(dst, 'wb').write(bytes(data))
    return dst


def holding(obj, dst):
    torch.save(obj, dst)
    return dst


@pytest.fixture(scope='module')
def digits_teacher(tmp_path_factory):
    return random_teacher_checkpoint(DIGITS['teacher'],
                                     str(tmp_path_factory.mktemp('t') / 'teacher.pth'))


# (id, make(teacher checkpoint, tmp dir) -> the checkpoint to give, error, words)
TEACHER_CHECKPOINTS = [
    ('truncated', lambda t, d: truncated(t, f'{d}/t.pth'), DamagedCheckpointError,
     ['The teacher', 't.pth', 'not a complete zip archive', 'truncated']),
    ('empty', lambda t, d: holding(b'', f'{d}/t.pth') and open(f'{d}/t.pth', 'wb').close()
     or f'{d}/t.pth', DamagedCheckpointError, ['The teacher', 't.pth', 'empty']),
    ('a list', lambda t, d: holding([torch.ones(2)] * 3, f'{d}/t.pth'), TypeError,
     ['The teacher', 't.pth', 'holds a list of 3 items', 'not a state dict',
      "torch.save({'state_dict'"]),
    ('a bare tensor', lambda t, d: holding(torch.ones(2, 3), f'{d}/t.pth'), TypeError,
     ['The teacher', 't.pth', 'holds a Tensor of shape (2, 3)', 'not a state dict']),
    ('a directory', lambda t, d: (os.makedirs(f'{d}/run'), open(f'{d}/run/epoch_3.pth',
                                                                'w').close(), f'{d}/run')[-1],
     DamagedCheckpointError, ['The teacher', 'run', 'is a directory', "['epoch_3.pth']"]),
    ('a device file', lambda t, d: '/dev/zero', DamagedCheckpointError,
     ['The teacher', '/dev/zero', 'a character device, not a checkpoint file']),
    ('corrupted record', lambda t, d: corrupted(t, f'{d}/t.pth'), DamagedCheckpointError,
     ['The teacher', 't.pth', 'fails its CRC-32 check']),
    ('zip bomb', lambda t, d: zip_bomb(t, f'{d}/t.pth'), OversizedCheckpointError,
     ['The teacher', 't.pth', 'declare 268,', 'zip bomb', 'MMKD_CHECKPOINT_MAX_RATIO']),
    ('not a checkpoint', lambda t, d: open(f'{d}/t.pth', 'w').write('weights') and f'{d}/t.pth',
     DamagedCheckpointError, ['The teacher', 't.pth', 'not a torch checkpoint']),
]


@pytest.mark.parametrize('make,error,words', [c[1:] for c in TEACHER_CHECKPOINTS],
                         ids=[c[0] for c in TEACHER_CHECKPOINTS])
def test_bad_teacher_checkpoint_is_refused_naming_teacher_file_and_cause(
        make, error, words, digits_teacher, tmp_path):
    bad = make(digits_teacher, str(tmp_path))
    start = time.time()
    with pytest.raises(error) as e:
        build(digits_cfg(bad))
    assert_words(e.value, error, words)
    assert time.time() - start < 30  # /dev/zero is never read, a bomb never inflated


def test_every_local_load_checks_the_archive(digits_teacher, tmp_path):
    """load_from, --resume and tools/test.py go through the same local loader as a teacher."""
    for make, error in ((corrupted, DamagedCheckpointError), (truncated, DamagedCheckpointError),
                        (zip_bomb, OversizedCheckpointError)):
        bad = make(digits_teacher, str(tmp_path / f'{make.__name__}.pth'))
        with pytest.raises(error) as e:
            _load_checkpoint(bad, map_location='cpu')
        assert type(e.value) is error and bad in str(e.value)
    assert set(_load_checkpoint(digits_teacher, map_location='cpu')) == {'state_dict', 'meta'}


def test_bad_mmrazor_checkpoint_is_refused_naming_the_file(digits_teacher, tmp_path):
    """tools/model_converters/mmrazor2mmkd.py --checkpoint: the same archive checks as a
    teacher; a plain (non-MMRazor) checkpoint is refused by name; nothing is written."""
    from mmkd.converters.mmrazor_checkpoint import convert_checkpoint
    out = tmp_path / 'out.pth'
    for make, error in ((corrupted, DamagedCheckpointError), (truncated, DamagedCheckpointError),
                        (zip_bomb, OversizedCheckpointError)):
        bad = make(digits_teacher, str(tmp_path / f'{make.__name__}.pth'))
        with pytest.raises(error) as e:
            convert_checkpoint(bad, str(out))
        assert type(e.value) is error and bad in str(e.value) and not out.exists()
    with pytest.raises(ValueError, match=r'no "architecture\.\*" keys'):
        convert_checkpoint(digits_teacher, str(out))
    assert not out.exists()


def test_bad_mmrazor_config_is_refused_naming_the_file(tmp_path):
    """tools/model_converters/mmrazor2mmkd.py CONFIG: the user names the config (read by
    mmengine's Config.fromfile, as any config); a missing file, a base that does not resolve,
    or a model that is not an MMRazor distiller is refused naming the file; nothing is
    written."""
    from mmkd.converters import ConversionError, convert_config
    with pytest.raises(FileNotFoundError, match='nosuch.py'):
        convert_config(str(tmp_path / 'nosuch.py'))
    bad_base = tmp_path / 'bad_base.py'
    bad_base.write_text("_base_ = ['mmcls::no/such_config.py']\n")
    with pytest.raises(ConversionError, match='bad_base.py'):
        convert_config(str(bad_base))
    plain = tmp_path / 'plain.py'
    plain.write_text("model = dict(type='ImageClassifier')\n")
    with pytest.raises(ConversionError, match=r"plain.py.*'ImageClassifier'"):
        convert_config(str(plain))
    assert sorted(p.name for p in tmp_path.iterdir()) == ['bad_base.py', 'plain.py']


def test_the_crc_check_can_be_turned_off(digits_teacher, tmp_path, monkeypatch):
    bad = corrupted(digits_teacher, str(tmp_path / 'c.pth'))
    monkeypatch.setenv('MMKD_CHECKPOINT_VERIFY_CRC', '0')
    _load_checkpoint(bad, map_location='cpu')  # loads (wrong weights): the user's choice
    monkeypatch.setenv('MMKD_CHECKPOINT_VERIFY_CRC', 'no')
    with pytest.raises(ValueError, match="MMKD_CHECKPOINT_VERIFY_CRC='no': must be 0 or 1"):
        _load_checkpoint(bad, map_location='cpu')


def test_damage_check_refuses_a_bomb_without_inflating_it(digits_teacher, tmp_path):
    bomb = zip_bomb(digits_teacher, str(tmp_path / 'iter_2.pth'), inflated=1 << 30)
    assert osp.getsize(bomb) < 8 << 20
    start = time.time()
    reason = checkpoint_damage(bomb)
    assert time.time() - start < 1.0, 'the damage check inflated the archive'
    assert 'declare 1,073,' in reason and 'zip bomb' in reason, reason


# ---------------------------------------------------------------------- auto-resume
def test_auto_resume_only_takes_runner_checkpoints(tmp_path):
    """A damaged latest checkpoint, an intact older one and a newer exported student.pth: the
    fallback is the Runner's epoch_1.pth, never the exported weights."""
    runner_ckpt = dict(meta=dict(epoch=1), state_dict={'student.w': torch.ones(2)},
                       message_hub=dict(), optimizer=dict())
    torch.save(runner_ckpt, tmp_path / 'epoch_1.pth')
    torch.save(runner_ckpt, tmp_path / 'epoch_2.pth')
    truncated(str(tmp_path / 'epoch_2.pth'), str(tmp_path / 'epoch_2.pth'))
    torch.save(dict(state_dict={'w': torch.ones(2)}, meta={}), tmp_path / 'student.pth')
    now = time.time()
    for i, name in enumerate(('epoch_1.pth', 'epoch_2.pth', 'student.pth')):
        os.utime(tmp_path / name, (now + i, now + i))
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'epoch_2.pth'))
    assert find_resumable_checkpoint(str(tmp_path)) == str(tmp_path / 'epoch_1.pth')


# ---------------------------------------------------------------------- URLs
@pytest.fixture
def silent_server():
    """A server on 127.0.0.1 that accepts connections and never answers; it closes them and
    stops by itself after 20 s."""
    sock = socket.socket()
    sock.bind(('127.0.0.1', 0))
    sock.listen(8)
    sock.settimeout(0.2)
    held, stop = [], threading.Event()

    def serve():
        deadline = time.time() + 20
        while not stop.is_set() and time.time() < deadline:
            try:
                held.append(sock.accept()[0])
            except OSError:
                pass
        for conn in held:
            conn.close()
        sock.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f'http://127.0.0.1:{sock.getsockname()[1]}'
    stop.set()
    thread.join(timeout=5)


def test_a_teacher_url_that_never_answers_times_out_naming_teacher_and_url(
        silent_server, tmp_path, monkeypatch):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path))
    monkeypatch.setenv('MMKD_DOWNLOAD_TIMEOUT', '1')
    url = f'{silent_server}/teacher.pth'
    start = time.time()
    with pytest.raises(CheckpointDownloadError) as e:
        build(digits_cfg(url))
    assert time.time() - start < 15
    for word in ('The teacher', url, 'no answer within 1 s', 'MMKD_DOWNLOAD_TIMEOUT'):
        assert word in str(e.value), f'{word!r} not in: {e.value}'
    assert not os.listdir(tmp_path / 'hub' / 'checkpoints')  # no partial file left


# ---------------------------------------------------------------------- export
def _export(monkeypatch, *argv):
    monkeypatch.setattr(sys, 'path', list(sys.path))  # the tool prepends the repo root
    monkeypatch.setattr(sys, 'argv', [EXPORT, *argv])
    runpy.run_path(EXPORT, run_name='__main__')  # in-process: a tool start costs seconds


def test_export_never_runs_the_config_text_of_a_checkpoint(tmp_path, monkeypatch):
    """A letKD-like checkpoint (inserted layers) whose meta['cfg'] runs a command when executed
    as a config: weights-only loading lets it in (it is a string); export must not run it."""
    marker = tmp_path / 'PWNED'
    payload = (f"_ = __import__('os').system('touch {marker}')\n"  # ran on 82f9e24
               "model = dict(type='mmkd.Distiller', student=dict(type='ImageClassifier'), "
               "teacher=dict(), blocks=dict())\n")
    src = str(tmp_path / 'epoch_1.pth')
    torch.save(dict(state_dict={'student.backbone.w': torch.ones(1),
                                'student.kd_inserts.penult.scores.weight': torch.ones(1)},
                    meta=dict(cfg=payload)), src)
    for extra in ([], ['--config-out', str(tmp_path / 'out.py')]):
        with pytest.raises(SystemExit) as e:
            _export(monkeypatch, src, str(tmp_path / 'student.pth'), *extra)
        for word in ('no mmkd run record', '--config CONFIG'):
            assert word in str(e.value.code), f'{word!r} not in: {e.value.code}'
        assert not marker.exists()


def test_export_of_a_checkpoint_without_record_takes_the_named_config(tmp_path, monkeypatch):
    """An older checkpoint (no run record): the student config comes from the distillation
    config the user names, a file read as any config."""
    src = str(tmp_path / 'epoch_1.pth')
    torch.save(dict(state_dict={'student.w': torch.ones(1)}, meta=dict(cfg='raise SystemExit')),
               src)
    out = tmp_path / 'student.py'
    _export(monkeypatch, src, str(tmp_path / 'student.pth'), '--config-out', str(out),
            '--config', DIGITS['distill'])
    exported = Config.fromfile(str(out))
    assert exported.model.type == 'ImageClassifier' and 'teacher' not in str(exported.model)
    assert exported.default_scope == 'mmpretrain' and exported.get('test_dataloader')


@pytest.mark.parametrize('record', [
    dict(config={"x': __import__('os').system('touch PWNED'), 'y": 1}),
    dict(config=dict(model=dict(type='X'), cmd="' + __import__('os').getcwd() + '")),
], ids=['injected key', 'quoted value'])
def test_export_writes_data_only_configs(record, tmp_path, monkeypatch):
    """A run record crafted so that MMEngine's config printer would write code: refused, or
    written as inert data."""
    src = str(tmp_path / 'epoch_1.pth')
    record = dict(format=1, student=dict(model=dict(type='ImageClassifier'), scope='mmpretrain',
                                         inserts=None), **record)
    torch.save(dict(state_dict={'student.w': torch.ones(1)}, meta=dict(mmkd=record)), src)
    out = tmp_path / 'student.py'
    try:
        _export(monkeypatch, src, str(tmp_path / 'student.pth'), '--config-out', str(out))
    except ValueError as e:
        assert 'refusing to write' in str(e) and 'data only' in str(e)
        assert not out.exists()
    else:
        check_data_only(out.read_text(), str(out))
        assert "__import__('os').getcwd()" in out.read_text()  # as a string


def test_data_only_check_refuses_code():
    check_data_only("a = dict(b=[1, (2, -3.0)], c={'d.e': None})\n", 'x')
    for text in ("a = __import__('os')", 'a = b', 'import os', 'a = [x for x in y]',
                 "a = dict(**b)", "a = 'x'.join(y)", 'a = f(1)', 'a = lambda: 1'):
        with pytest.raises(ValueError, match='refusing to write'):
            check_data_only(text, 'x')


# ---------------------------------------------------------------------- resume
class _Runner:
    """What RunRecordHook reads of a Runner: its config, model and whether it resumes."""

    def __init__(self, model_cfg):
        from mmengine.config import Config
        self.cfg = Config(dict(model=model_cfg, default_scope='mmpretrain'))
        self.model = build(model_cfg)
        self._resume = True


def _resume_check(saved_cfg, current_cfg, **hook_args):
    from mmkd.hooks import RunRecordHook
    saved = _Runner(saved_cfg)
    checkpoint = dict(meta={}, state_dict=saved.model.state_dict())
    RunRecordHook().before_save_checkpoint(saved, checkpoint)
    RunRecordHook(**hook_args).after_load_checkpoint(_Runner(current_cfg), checkpoint)


def _logits_block(method=dict(type='LogitKD', tau=4.0), loss_weight=1.0):
    return dict(logits=dict(student='head.fc', teacher='head.fc', method=method,
                            loss_weight=loss_weight))


def _wider_student(cfg):
    import copy
    cfg = copy.deepcopy(cfg)
    cfg.student.backbone.base_channels = 8
    cfg.student.head.in_channels = 64
    return cfg


RESUME_CHANGES = [
    ('another method', dict(blocks=_logits_block(dict(type='DIST'))),
     ["model.blocks.logits.method.type: 'LogitKD' -> 'DIST'",
      'model.blocks.logits.method.tau: 4.0 -> ', '--allow-objective-change']),
    ('another record point', dict(blocks=dict(logits=dict(
        student='backbone.layer4', teacher='backbone.layer4', method='FeatureMSE'))),
     ["model.blocks.logits.student: 'head.fc' -> 'backbone.layer4'",
      'parameters: 2 tensor(s) the checkpoint lacks: [\'methods.logits.connectors.0']),
    ('a wider student', _wider_student,
     ['model.student.backbone.base_channels: 4 -> 8', 'parameters: ',
      'student.backbone.layer1.0.bn1.weight (4,) -> (8,)']),
    ('a new block', dict(blocks=dict(**_logits_block(), feat=dict(
        student='backbone.layer4', teacher='backbone.layer4', method='AT'))),
     ["model.blocks.feat: '<absent>' -> {"]),
]


@pytest.mark.parametrize('change,words', [c[1:] for c in RESUME_CHANGES],
                         ids=[c[0] for c in RESUME_CHANGES])
def test_resume_refuses_a_structural_change_naming_it(change, words, teacher_ckpts):
    from mmkd.hooks import ObjectiveChangedError
    saved = digits_cfg(teacher_ckpts['digits'])
    current = (change(saved) if callable(change) else
               digits_cfg(teacher_ckpts['digits'], **change))
    with pytest.raises(ObjectiveChangedError) as e:
        _resume_check(saved, current)
    assert type(e.value) is ObjectiveChangedError
    for word in ['another distillation objective', *words]:
        assert word in str(e.value), f'{word!r} not in: {e.value}'
    _resume_check(saved, current, allow_objective_change=True)  # told: a warning


def test_resume_warns_on_a_changed_loss_weight(teacher_ckpts, monkeypatch):
    import mmkd.hooks.run_record as run_record
    logged = []
    monkeypatch.setattr(run_record, 'print_log', lambda msg, **kw: logged.append(msg))
    saved = digits_cfg(teacher_ckpts['digits'])
    for weight in (2.0, dict(type='LinearWarmup', value=1.0, warmup=5)):
        _resume_check(saved, digits_cfg(teacher_ckpts['digits'],
                                        blocks=_logits_block(loss_weight=weight)))
        assert 'Resuming with changed loss weights' in logged[-1], logged
        assert 'model.blocks.logits.loss_weight' in logged[-1], logged


@pytest.mark.parametrize('config', [
    dict(custom_imports=dict(imports=['mmkd', 'evil_module'])),
    dict(default_scope='evil_module'),
    dict(val_evaluator=dict(type='evil_module.Metric')),
], ids=['custom_imports', 'default_scope', 'scoped type'])
def test_export_refuses_a_recorded_config_that_imports_other_modules(config, tmp_path,
                                                                     monkeypatch):
    src = str(tmp_path / 'epoch_1.pth')
    record = dict(format=1, config=config, student=dict(
        model=dict(type='ImageClassifier'), scope='mmpretrain', inserts=None))
    torch.save(dict(state_dict={'student.w': torch.ones(1)}, meta=dict(mmkd=record)), src)
    out = tmp_path / 'student.py'
    with pytest.raises(ValueError) as e:
        _export(monkeypatch, src, str(tmp_path / 'student.pth'), '--config-out', str(out))
    for word in ("['evil_module']", 'would import', '--config CONFIG'):
        assert word in str(e.value), f'{word!r} not in: {e.value}'
    assert not out.exists()


# ==============================================================================================
# One run per work dir, limits on skipped steps (issue 28: items 7, 10)
# Catalogue cases about a run as a whole: one run per work dir (the lock), and the limit on
# steps skipped for non-finite losses. Each case: an input, the exact error class it must raise
# and the words its message must contain.
# ==============================================================================================
LOCK_MODULE = osp.join(REPO, 'mmkd', 'utils', 'work_dir_lock.py')
# Another process taking (or trying) the lock: the module loaded by path, without mmkd's
# imports (~0.1 s). argv: work dir, 'hold' (take it, say so, sleep) or 'try' (print the error).
OTHER_PROCESS = f"""
import importlib.util, sys, time
spec = importlib.util.spec_from_file_location('work_dir_lock', {LOCK_MODULE!r})
lock = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lock)
try:
    held = lock.lock_work_dir(sys.argv[1], config='other.py')
except lock.WorkDirInUseError as e:
    print(type(e).__name__, e, flush=True)
    sys.exit(3)
print('locked', flush=True)
if sys.argv[2] == 'hold':
    time.sleep(120)
"""


def other_process(work_dir, mode):
    return subprocess.Popen([sys.executable, '-c', OTHER_PROCESS, str(work_dir), mode],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def snapshot(folder):
    """Every file under ``folder`` with its bytes: what a refused run must leave unchanged."""
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = osp.join(root, name)
            with open(path, 'rb') as f:
                out[osp.relpath(path, folder)] = f.read()
    return out


# ---------------------------------------------------------------------- one run per work dir
def test_second_lock_on_a_work_dir_is_refused_naming_the_holder(tmp_path):
    """Held here, tried from another process: refused naming this process; free again once
    released."""
    work = tmp_path / 'w'
    with lock_work_dir(str(work), config='mine.py') as held:
        assert held.held
        other = other_process(work, 'try')
        out = other.communicate(timeout=60)[0]
        assert other.returncode == 3, out
        for word in ('WorkDirInUseError', f'Work dir {work} is in use', f'pid {os.getpid()}',
                     f'host {socket.gethostname()}', 'config mine.py', 'command:',
                     osp.join(str(work), LOCK_FILE), '--allow-shared-work-dir'):
            assert word in out, (word, out)
    other = other_process(work, 'try')
    assert other.communicate(timeout=60)[0].strip() == 'locked' and other.returncode == 0


def test_lock_held_by_a_killed_process_is_free_and_a_refusal_writes_nothing(tmp_path):
    work = tmp_path / 'w'
    holder = other_process(work, 'hold')
    try:
        assert holder.stdout.readline().strip() == 'locked'
        before = snapshot(work)
        with pytest.raises(WorkDirInUseError) as e:
            lock_work_dir(str(work), config='mine.py')
        assert_words(e.value, WorkDirInUseError, [
            str(work), f'pid {holder.pid}', 'config other.py', 'started', LOCK_FILE,
            'overwrite', '--allow-shared-work-dir'])
        assert snapshot(work) == before
        # Told to share: a warning, the run goes on without the lock.
        assert lock_work_dir(str(work), allow_shared=True) is None
    finally:
        holder.kill()  # SIGKILL: no chance to clean up
        holder.wait()
    with lock_work_dir(str(work)) as held:
        assert held.held


def test_only_global_rank_0_takes_the_lock(tmp_path, monkeypatch):
    """torchrun sets RANK before the process group exists; the other ranks never touch it."""
    monkeypatch.setenv('RANK', '1')
    assert lock_work_dir(str(tmp_path / 'w'), launcher='pytorch') is None
    assert not (tmp_path / 'w').exists()
    monkeypatch.setenv('SLURM_PROCID', '0')
    with lock_work_dir(str(tmp_path / 'w'), launcher='slurm') as held:
        assert held.held


def test_train_tool_refuses_a_locked_work_dir_and_runs_once_the_holder_is_killed(
        tmp_path, teacher_ckpts):
    work = tmp_path / 'w'
    args = ['tools/train.py', DIGITS['distill'], '--work-dir', str(work), '--cfg-options',
            f'model.teacher.checkpoint={teacher_ckpts["digits"]}', 'train_cfg.max_epochs=1',
            'train_dataloader.batch_size=32', 'train_dataloader.dataset.indices=32',
            'val_dataloader.dataset.indices=32']
    holder = other_process(work, 'hold')
    try:
        assert holder.stdout.readline().strip() == 'locked'
        before = snapshot(work)
        proc = run_tool(args, check=False)
        assert proc.returncode != 0, proc.stdout[-3000:]
        for word in ('WorkDirInUseError', f'Work dir {work} is in use', f'pid {holder.pid}',
                     'config other.py', '--allow-shared-work-dir'):
            assert word in proc.stdout, (word, proc.stdout[-3000:])
        assert snapshot(work) == before  # no log dir, config dump or checkpoint
    finally:
        holder.kill()
        holder.wait()
    run_tool(args)
    assert (work / 'epoch_1.pth').is_file()


# ---------------------------------------------------------------------- non-finite skip limit
SKIP_LIMIT_CONFIGS = [
    ('skip-limit-not-a-dict', dict(nonfinite_skip_limit=5),
     TypeError, ['nonfinite_skip_limit=5', "['consecutive', 'total']", 'integer >= 1',
                 'dict(consecutive=5, total=100)']),
    ('skip-limit-unknown-key', dict(nonfinite_skip_limit=dict(count=5)),
     ValueError, ["unknown key(s) ['count']", "['consecutive', 'total']"]),
    ('skip-limit-zero', dict(nonfinite_skip_limit=dict(consecutive=0)),
     ValueError, ['nonfinite_skip_limit.consecutive=0', 'integer >= 1', 'None (no limit)',
                  "nonfinite_loss='raise'"]),
    ('skip-limit-string', dict(nonfinite_skip_limit=dict(total='100')),
     TypeError, ["nonfinite_skip_limit.total='100' (str)", 'integer >= 1']),
]


@pytest.mark.parametrize('overrides,error,words', [c[1:] for c in SKIP_LIMIT_CONFIGS],
                         ids=[c[0] for c in SKIP_LIMIT_CONFIGS])
def test_bad_skip_limit_is_refused_at_build_naming_valid_values(
        teacher_ckpts, overrides, error, words):
    with pytest.raises(error) as e:
        build(digits_cfg(teacher_ckpts['digits'], nonfinite_loss='skip', **overrides))
    assert_words(e.value, error, words)


# (id, overrides, the steps ('good' or 'bad' batches), words of the error the last one raises)
SKIP_LIMIT_RUNS = [
    ('skip-limit-consecutive-default', dict(), ['bad'] * 6,
     ['Non-finite loss at iteration 6', 'student.loss = NaN', 'Input batch: contains NaN',
      'nonfinite_skip_limit=dict(consecutive=5, total=100)',
      'steps skipped already: 5 in a row, 5 in all', 'the consecutive limit is reached',
      'diverged', 'model.nonfinite_skip_limit.consecutive']),
    # a finite step resets the consecutive count: only the total stops this one
    ('skip-limit-total', dict(nonfinite_skip_limit=dict(consecutive=2, total=3)),
     ['bad', 'bad', 'good', 'bad', 'bad'],
     ['Non-finite loss at iteration 5', 'nonfinite_skip_limit=dict(consecutive=2, total=3)',
      'steps skipped already: 1 in a row, 3 in all', 'the total limit is reached',
      'model.nonfinite_skip_limit.total']),
]


@pytest.mark.parametrize('overrides,steps,words', [c[1:] for c in SKIP_LIMIT_RUNS],
                         ids=[c[0] for c in SKIP_LIMIT_RUNS])
def test_skipping_stops_at_the_limit_with_the_nonfinite_report(teacher_ckpts, overrides, steps,
                                                               words):
    d = build(digits_cfg(teacher_ckpts['digits'], nonfinite_loss='skip', **overrides)).train()
    wrapper = build_optim_wrapper(d, dict(optimizer=dict(type='SGD', lr=0.01)))
    inputs, samples = batch(size=16)
    good = list((inputs * 50 + 100).clamp(0, 255))
    bad = [x.clone() for x in good]
    bad[0][0, 0, 0] = math.nan
    hub = MessageHub.get_current_instance()
    for i, step in enumerate(steps[:-1]):
        hub.update_info('iter', i)
        log = d.train_step(dict(inputs=bad if step == 'bad' else good, data_samples=samples),
                           wrapper)
        assert log['nonfinite_skips'].item() == steps[:i + 1].count('bad')
    hub.update_info('iter', len(steps) - 1)
    with pytest.raises(NonFiniteError) as e:
        d.train_step(dict(inputs=bad, data_samples=samples), wrapper)
    assert_words(e.value, NonFiniteError, words)


# ==============================================================================================
# tools/demo.py bookkeeping (issue 28: item 5)
# tools/demo.py bookkeeping survives a kill at any point (issue 28, item 5).
#
# A teacher is reused only when the checkpoint itself says it was trained from the same config
# and options (score and fingerprint in its ``meta``, written with the weights in one atomic
# rename); ``teacher.json`` is only a readable copy, and damaged or stale bookkeeping means
# "train again" with a printed reason, never a traceback. letKD templates are made again when
# their arguments, options or teacher change. No real training: ``train`` and the templates
# tool's subprocess are replaced by fakes that write small files; a kill is a KeyboardInterrupt
# raised at the crash point.
# ==============================================================================================
LETKD1 = osp.join(REPO, 'configs', 'demo', 'digits',
                  'letkd-1_resnet34-wide_resnet18-tiny_digits.py')
RETRAIN = 'training it again'


@pytest.fixture
def demo(monkeypatch):
    """tools/demo.py as a fresh module whose ``train`` writes a one-tensor checkpoint and its
    ``last_checkpoint`` (run n scores 50 + n); ``demo.trained`` lists each run's options."""
    spec = importlib.util.spec_from_file_location('catalogue_demo',
                                                  osp.join(REPO, 'tools', 'demo.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.trained = []

    def fake_train(config, work_dir, metric, options=(), scale=1.0, threads=None):
        module.trained.append(list(options))
        run = osp.join(REPO, work_dir)
        os.makedirs(run, exist_ok=True)
        ckpt = osp.join(run, f'epoch_{len(module.trained)}.pth')
        torch.save(dict(state_dict=dict(w=torch.full((1, ), float(len(module.trained))))), ckpt)
        with open(osp.join(run, 'last_checkpoint'), 'w') as f:
            f.write(ckpt)
        return 50.0 + len(module.trained)

    monkeypatch.setattr(module, 'train', fake_train)
    return module


def teacher(demo, root, options=()):
    return demo.ensure_teacher('classification', demo.TASKS['classification'], False,
                               str(root), list(options))


# --- (a) a kill while teacher.json is written ------------------------------------------------

def test_kill_while_teacher_json_is_written(demo, tmp_path, monkeypatch, capsys):
    """82f9e24 opened teacher.json for writing (emptying it) before json.dump; killed there,
    the next run died with JSONDecodeError. Now the checkpoint carries its own score and
    fingerprint: the next run reuses it and writes the copy again."""
    real_dump, real_dumps = json.dump, json.dumps

    def killed(real):
        def write(obj, *args, **kwargs):
            if isinstance(obj, dict) and 'fingerprint' in obj:  # the teacher's metadata
                raise KeyboardInterrupt
            return real(obj, *args, **kwargs)
        return write

    with monkeypatch.context() as m:
        m.setattr(json, 'dump', killed(real_dump))
        m.setattr(json, 'dumps', killed(real_dumps))
        with pytest.raises(KeyboardInterrupt):
            teacher(demo, tmp_path)
    assert demo.trained == [['randomness.seed=0']]
    capsys.readouterr()
    score, ckpt = teacher(demo, tmp_path)
    assert 'reusing' in capsys.readouterr().out
    assert score == 51.0 and len(demo.trained) == 1
    with open(tmp_path / 'teacher.json') as f:
        assert json.load(f) == safe_torch_load(ckpt)['meta']


@pytest.mark.parametrize('text', ['', '{"score": 5', '[]'], ids=['empty', 'partial', 'list'])
def test_damaged_teacher_json_is_rewritten(demo, tmp_path, capsys, text):
    """What a kill (or anything else) leaves in teacher.json is never read: 82f9e24 raised
    JSONDecodeError / AttributeError here."""
    teacher(demo, tmp_path)
    (tmp_path / 'teacher.json').write_text(text)
    capsys.readouterr()
    assert teacher(demo, tmp_path)[0] == 51.0 and len(demo.trained) == 1
    assert 'reusing' in capsys.readouterr().out
    assert json.loads((tmp_path / 'teacher.json').read_text())['score'] == 51.0


# (id, damage done to teacher.pth, words of the printed reason)
DAMAGED_TEACHERS = [
    ('truncated', lambda p: p.write_bytes(p.read_bytes()[:100]), ['cannot be read']),
    ('empty', lambda p: p.write_bytes(b''), ['cannot be read']),
    ('a list', lambda p: torch.save([torch.zeros(1)], p), ['not a checkpoint', 'list']),
    ('no meta score',  # what 82f9e24 wrote: meta without score or fingerprint
     lambda p: torch.save(dict(state_dict=dict(w=torch.zeros(1)),
                               meta=dict(config='x.py')), p),
     ['records no score and fingerprint', 'older tools/demo.py']),
]


@pytest.mark.parametrize('damage,words', [c[1:] for c in DAMAGED_TEACHERS],
                         ids=[c[0] for c in DAMAGED_TEACHERS])
def test_damaged_teacher_checkpoint_is_trained_again(demo, tmp_path, capsys, damage, words):
    """A teacher.pth that cannot vouch for itself is trained again, with the reason printed
    (82f9e24 trusted teacher.json and reused any file under the name)."""
    teacher(demo, tmp_path)
    damage(tmp_path / 'teacher.pth')
    capsys.readouterr()
    assert teacher(demo, tmp_path)[0] == 52.0 and len(demo.trained) == 2
    line = next(x for x in capsys.readouterr().out.splitlines() if RETRAIN in x)
    assert line.startswith('[classification] teacher: ') and 'teacher.pth' in line
    for word in words:
        assert word in line, line


# --- (b) a kill between renaming teacher.pth into place and rewriting teacher.json -----------

@pytest.mark.parametrize('next_options,expected', [
    ((), ('trained', 53.0)),  # the file holds the ['a.b=1'] teacher: never reused for ()
    (['a.b=1'], ('reused', 52.0)),  # it is whole, with its own score: reused
], ids=['old-options', 'new-options'])
def test_kill_after_teacher_rename_never_pairs_other_options(demo, tmp_path, monkeypatch,
                                                             capsys, next_options, expected):
    """82f9e24 renamed the new teacher.pth into place, then wrote teacher.json: killed in
    between, the old json's fingerprint still matched the old options, and the next run with
    them reused the teacher trained with the new ones (and reported the old score)."""
    assert teacher(demo, tmp_path)[0] == 51.0
    real_replace = os.replace

    def replace_then_die(src, dst, *args, **kwargs):
        real_replace(src, dst, *args, **kwargs)
        if osp.basename(dst) == 'teacher.pth':
            raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(os, 'replace', replace_then_die)
        with pytest.raises(KeyboardInterrupt):
            teacher(demo, tmp_path, ['a.b=1'])
    assert len(demo.trained) == 2
    capsys.readouterr()
    score, ckpt = teacher(demo, tmp_path, next_options)
    out = capsys.readouterr().out
    what, want = expected
    assert score == want
    if what == 'trained':
        assert 'was trained from another config or options: ' + RETRAIN in out, out
        assert len(demo.trained) == 3
    else:
        assert 'reusing' in out and len(demo.trained) == 2
    meta = safe_torch_load(ckpt)['meta']
    assert meta['score'] == want and meta['options'] == ['randomness.seed=0', *next_options]
    with open(tmp_path / 'teacher.json') as f:
        assert json.load(f) == meta


# --- (c) letKD templates keyed by their arguments and teacher --------------------------------

@pytest.fixture
def templates_tool(monkeypatch):
    """Replace the templates tool's subprocess: write K zero centres (K from
    --num-templates) to --out; return the list of commands run."""
    runs = []

    def fake_run(cmd, **kwargs):
        runs.append(cmd)
        k = int(cmd[cmd.index('--num-templates') + 1])
        torch.save(dict(kind='kmeans', centres=torch.zeros(k, 4)), cmd[cmd.index('--out') + 1])
        return subprocess.CompletedProcess(cmd, 0, stdout='')

    monkeypatch.setattr(subprocess, 'run', fake_run)
    return runs


def with_templates(tmp_path, k):
    """The letKD-1 digits config asking for ``k`` templates."""
    path = tmp_path / f'letkd-1_k{k}.py'
    path.write_text(f'_base_ = {LETKD1!r}\nletkd_templates = dict(penult=[\'--point\', '
                    f'\'backbone.layer4\', \'--kind\', \'kmeans\', \'--num-templates\', '
                    f'\'{k}\'])\n')
    return str(path)


def fake_teacher(path, value):
    torch.save(dict(state_dict=dict(w=torch.full((1, ), value))), path)
    return str(path)


def test_templates_are_made_again_when_their_arguments_change(demo, tmp_path, templates_tool,
                                                              capsys):
    """82f9e24 kept a templates file while it was newer than the teacher: 64 templates were
    kept when the config asked for 32."""
    ckpt = fake_teacher(tmp_path / 'teacher.pth', 0.0)
    opts = demo.ensure_templates(LETKD1, ckpt)
    path = tmp_path / 'letkd_penult.pth'
    assert opts == [f'model.blocks.penult.method.templates={path}']
    assert safe_torch_load(path)['centres'].shape == (64, 4)
    capsys.readouterr()
    assert demo.ensure_templates(with_templates(tmp_path, 32), ckpt) == opts
    out = capsys.readouterr().out
    assert safe_torch_load(path)['centres'].shape == (32, 4) and len(templates_tool) == 2
    assert ("was made with arguments ['--point', 'backbone.layer4', '--kind', 'kmeans', "
            "'--num-templates', '64'], not ['--point', 'backbone.layer4', '--kind', 'kmeans', "
            "'--num-templates', '32']: making them again") in out, out
    # the same arguments again: reused; other --cfg-options (the tune split): made again
    demo.ensure_templates(with_templates(tmp_path, 32), ckpt)
    assert len(templates_tool) == 2
    tune = ['train_dataloader.dataset.tune_fraction=0.2']
    demo.ensure_templates(with_templates(tmp_path, 32), ckpt, tune)
    assert len(templates_tool) == 3 and templates_tool[-1][-2:] == ['--cfg-options', *tune]
    assert "was made with --cfg-options [], not ['train_dataloader" in capsys.readouterr().out
    assert not [p for p in os.listdir(tmp_path) if p.endswith('.making')]


def test_templates_are_made_again_from_another_teacher(demo, tmp_path, templates_tool,
                                                       capsys):
    """A teacher replaced by another one whose file is older than the templates (copied back
    with its times, or trained elsewhere): 82f9e24 compared times only and kept them."""
    ckpt = fake_teacher(tmp_path / 'teacher.pth', 0.0)
    demo.ensure_templates(LETKD1, ckpt)
    made = osp.getmtime(tmp_path / 'letkd_penult.pth')
    fake_teacher(ckpt, 1.0)
    os.utime(ckpt, (made - 60, made - 60))
    capsys.readouterr()
    demo.ensure_templates(LETKD1, ckpt)
    out = capsys.readouterr().out
    assert len(templates_tool) == 2
    assert "letKD templates penult: " in out and "was made with teacher checkpoint " \
        "'SHA-256 " in out and 'making them again' in out, out
    assert safe_torch_load(tmp_path / 'letkd_penult.pth')['made_by']['teacher_sha256'] == \
        demo.file_sha256(ckpt)


@pytest.mark.parametrize('content,words', [
    (b'', ['cannot be read']),
    (None, ['records no teacher and arguments']),  # a templates file made without the demo
], ids=['empty', 'unrecorded'])
def test_templates_that_cannot_vouch_for_themselves_are_made_again(demo, tmp_path,
                                                                   templates_tool, capsys,
                                                                   content, words):
    ckpt = fake_teacher(tmp_path / 'teacher.pth', 0.0)
    path = tmp_path / 'letkd_penult.pth'
    if content is None:
        torch.save(dict(kind='kmeans', centres=torch.zeros(64, 4)), path)
    else:
        path.write_bytes(content)
    demo.ensure_templates(LETKD1, ckpt)
    out = capsys.readouterr().out
    assert len(templates_tool) == 1 and 'making them again' in out
    for word in words:
        assert word in out, out
    assert safe_torch_load(path)['made_by']['arguments'][-1] == '64'


# ==============================================================================================
# Method and schedule arguments (issue 28: item 9)
# Numbers that cannot be right (issue 28, item 9): every method and loss-weight schedule
# argument has a declared type and range, checked at build, naming the block, the method or
# schedule and the argument; a negative loss weight needs the block's explicit opt-in.
#
# Cases in the failure-catalogue format: (id, overrides of the digits distiller config, exact
# error class, words the message must contain).
# ==============================================================================================
NEGATIVE = 'allow_negative_loss_weight=True'

ARGUMENT_CASES = [
    ('loss-weight-negative',
     dict(blocks=block(loss_weight=-1)),
     ValueError, ["Block 'b'", 'loss_weight must be a finite number >= 0', 'got -1', NEGATIVE]),
    ('loss-weight-constant-negative',
     dict(blocks=block(loss_weight=dict(type='Constant', value=-3))),
     ValueError, ["Block 'b'", 'loss_weight Constant argument value', '>= 0', 'got -3',
                  NEGATIVE]),
    ('loss-weight-step-negative-gamma',
     dict(blocks=block(loss_weight=dict(type='Step', milestones=[5], gamma=-2))),
     ValueError, ["Block 'b'", 'loss_weight Step argument gamma', '>= 0', 'got -2', NEGATIVE]),
    ('loss-weight-by-epoch-string',
     dict(blocks=block(loss_weight=dict(type='CosineDecay', by_epoch='no'))),
     TypeError, ["Block 'b'", 'loss_weight CosineDecay argument by_epoch',
                 'must be True or False', "got 'no' (str)"]),
    ('loss-weight-opt-in-not-bool',
     dict(blocks=block(loss_weight=-1, allow_negative_loss_weight='yes')),
     TypeError, ["Block 'b'", 'allow_negative_loss_weight must be True or False',
                 "got 'yes' (str)"]),
    ('method-tau-zero',
     dict(blocks=block(method=dict(type='LogitKD', tau=0))),
     ValueError, ["Block 'b'", 'LogitKD argument tau', 'positive (a finite number > 0)',
                  'got 0']),
    ('method-tau-string',
     dict(blocks=block(method=dict(type='LogitKD', tau='abc'))),
     TypeError, ["Block 'b'", 'LogitKD argument tau', 'a finite number > 0', "got 'abc' (str)"]),
    ('method-bool-for-number',
     dict(blocks=block(method=dict(type='LogitKD', tau=True))),
     TypeError, ["Block 'b'", 'LogitKD argument tau', 'a finite number > 0', 'got True (bool)']),
    ('method-infinite-number',
     dict(blocks=block(method=dict(type='DIST', beta=math.inf))),
     TypeError, ["Block 'b'", 'DIST argument beta', 'a finite number >= 0', 'got inf']),
    ('method-string-for-int',
     dict(blocks=block(method=dict(type='DiffKD', inference_steps='five'))),
     TypeError, ["Block 'b'", 'DiffKD argument inference_steps', 'must be an int >= 1',
                 "got 'five' (str)"]),
    ('method-negative-for-positive-int',
     dict(blocks=block(method=dict(type='DiffKD', inference_steps=-2))),
     ValueError, ["Block 'b'", 'DiffKD argument inference_steps', 'must be an int >= 1',
                  'got -2']),
    ('method-choice-not-in-literal',
     dict(blocks=block(method=dict(type='MGD', preset='classification', resize='bilinaer'))),
     ValueError, ["Block 'b'", 'MGD argument resize', "'bilinear'", "'nearest'", 'or None',
                  "got 'bilinaer'"]),
    ('method-loss-name-not-a-loss',
     dict(blocks=block(method=dict(type='LogitKD', loss_name='kd'))),
     ValueError, ["Block 'b'", 'LogitKD argument loss_name', "containing 'loss'", "got 'kd'",
                  'not optimised']),
    ('method-per-side-value',
     dict(blocks=block(method=dict(type='DiffKD', token_shape=dict(teacher=(4, 0))))),
     ValueError, ["Block 'b'", 'DiffKD argument token_shape (teacher)',
                  'None or (h, w), two ints >= 1', 'got (4, 0)']),
]


@pytest.mark.parametrize('overrides,error,words', [c[1:] for c in ARGUMENT_CASES],
                         ids=[c[0] for c in ARGUMENT_CASES])
def test_impossible_argument_names_block_method_and_argument(teacher_ckpts, overrides, error,
                                                             words):
    with pytest.raises(error) as e:
        build(digits_cfg(teacher_ckpts['digits'], **overrides))
    assert_words(e.value, error, words)


def test_negative_loss_weight_builds_when_the_block_opts_in(teacher_ckpts):
    d = build(digits_cfg(teacher_ckpts['digits'], blocks=dict(
        b=dict(student='head.fc', teacher='head.fc', method='LogitKD', loss_weight=-1,
               allow_negative_loss_weight=True),
        c=dict(student='head.fc', teacher='head.fc', method='LogitKD',
               loss_weight=dict(type='Step', milestones=[1], gamma=-0.5),
               allow_negative_loss_weight=True))))
    assert d.blocks['b'].loss_weight.current() == -1.0
    assert d.blocks['c'].loss_weight.at(2) == -0.5


def test_direct_construction_is_checked_too():
    """The schema holds for a method made in Python (no block to name), and copies still work.
    """
    from mmkd.methods import DiffKD, LogitKD
    with pytest.raises(ValueError, match=r'^LogitKD argument tau must be positive'):
        LogitKD(tau=0)
    with pytest.raises(TypeError, match=r"DiffKD argument inference_steps .* got 'five'"):
        DiffKD(inference_steps='five')
    with pytest.raises(TypeError, match=r"unknown argument\(s\) \['temperature'\]"):
        LogitKD(temperature=2.0)
    method = LogitKD(2.0)  # positional arguments are checked by name as well
    assert copy.deepcopy(method).tau == 2.0


def _mmkd_methods():
    from mmkd.methods import BaseDistillMethod
    from mmkd.registry import MODELS
    return sorted({cls for cls in MODELS.module_dict.values()
                   if isinstance(cls, type) and issubclass(cls, BaseDistillMethod)
                   and cls.__module__.startswith('mmkd.')}, key=lambda c: c.__name__)


def test_every_method_and_schedule_argument_is_declared():
    """No method or schedule can skip the schema: each ``__init__`` argument along the MRO has
    an annotation the checker understands, and each default satisfies its own annotation."""
    from mmkd.distillers.loss_weights import SCHEDULES
    from mmkd.utils.arguments import argument_schema, check_value, describe
    classes = _mmkd_methods() + list(SCHEDULES.values())
    assert {'LogitKD', 'DiffKD', 'LD', 'LetKD', 'MGD', 'Step'} <= {c.__name__ for c in classes}
    missing, wrong = [], []
    for cls in classes:
        params, hints, closed = argument_schema(cls)
        assert closed, f'{cls.__name__}: its **kwargs reach no declared __init__'
        for name, param in params.items():
            if name not in hints:
                missing.append(f'{cls.__name__}.{name}')
                continue
            describe(hints[name])  # raises on an annotation the checker cannot read
            if param.default is not inspect.Parameter.empty:
                try:
                    check_value(param.default, hints[name], f'{cls.__name__}.{name}')
                except (TypeError, ValueError) as e:
                    wrong.append(str(e))
    assert not missing, f'arguments without a declared type and range: {missing}'
    assert not wrong, f'defaults outside their own declaration: {wrong}'


# ==============================================================================================
# Messages that name the cause and the setting (issue 28: items 12, 13, 16, AT)
# Catalogue of issue 28's "messages that hide the cause" (items 12, 13, 16) and AT's shape
# rule: each bad input raises an exact error class whose message names the block, teacher,
# insert or model at fault and the setting to change.
#
# Each case builds the digits distiller in-process (conftest's ``digits_cfg``/``build``/``batch``);
# the training-time cases then run one ``loss`` step on a random batch.
# ==============================================================================================
def teacher_cfg(ckpt, **keys):
    return dict(config=DIGITS['teacher'], checkpoint=ckpt, **keys)


def meta_file(folder, text: str, size: int = 0) -> str:
    """``folder`` holding a ``meta.json`` of ``text`` (a teacher cache that is not one),
    extended to ``size`` bytes (sparse) if larger."""
    with open(osp.join(folder, 'meta.json'), 'w') as f:
        f.write(text)
        if size > len(text):
            f.truncate(size)
    return str(folder)


def grey_teacher(ckpts, tmp_path):
    """teachers=dict(grey=...): the digits teacher made for 1-channel images (the student's
    batch has 3), with a checkpoint that fits it."""
    cfg = Config.fromfile(DIGITS['teacher']).model
    cfg.backbone.in_channels = 1
    path = str(tmp_path / 'grey.pth')
    torch.save(dict(state_dict=build(copy.deepcopy(cfg)).state_dict()), path)
    return dict(teacher=None, blocks=block(teacher='grey:head.fc'),
                teachers=dict(grey=dict(model=cfg, checkpoint=path, normalisation='student')))


def samples_with(field, value):
    def make(n):
        inputs, samples = batch(n=n, size=16)
        for s in samples:
            s.set_field(value, field)
        return inputs, samples
    return make


SHAPE = 'model.dry_run_input_shape'
VALID = 'four integers (N, C, H, W), each >= 1'
# (id, overrides of the digits distiller config (a function of the teacher checkpoints and a
#  temporary folder), the training batch (a function of its size) or None to fail at build,
#  error class, words the message must contain)
MESSAGE_CASES = [
    # 12. dry_run_input_shape, checked at build before anything is allocated
    ('dry-run-shape-absurd', lambda c, p: dict(dry_run_input_shape=(2, 3, 100000, 100000)), None,
     ValueError, [SHAPE, '(2, 3, 100000, 100000)', '60,000,000,000 elements', VALID,
                  '33,554,432']),
    ('dry-run-shape-zero-batch', lambda c, p: dict(dry_run_input_shape=(0, 3, 16, 16)), None,
     ValueError, [SHAPE, '(0, 3, 16, 16)', VALID]),
    ('dry-run-shape-rank-2', lambda c, p: dict(dry_run_input_shape=(2, 3)), None,
     ValueError, [SHAPE, '(2, 3)', VALID]),
    ('dry-run-shape-float', lambda c, p: dict(dry_run_input_shape=(2, 3, 16.0, 16)), None,
     TypeError, [SHAPE, '(2, 3, 16.0, 16)', VALID]),
    ('dry-run-shape-string', lambda c, p: dict(dry_run_input_shape='2,3,16,16'), None,
     TypeError, [SHAPE, "'2,3,16,16'", VALID]),
    ('dry-run-one-channel', lambda c, p: dict(dry_run_input_shape=(2, 1, 16, 16)), None,
     RuntimeError, ['The student (ImageClassifier) failed in the dry run', '(2, 1, 16, 16)',
                    'to have 3 channels', 'set model.dry_run_input_shape']),
    ('dry-run-teacher-fails', grey_teacher, None,
     RuntimeError, ["The teacher 'grey' (ImageClassifier) failed in the dry run",
                    '(2, 3, 16, 16)', 'to have 1 channels', 'set model.dry_run_input_shape']),
    ('batch-of-1-bn-in-method', lambda c, p: dict(blocks=block(method='DiffKD')),
     lambda: batch(n=1, size=16),
     ValueError, ["Block 'b' (DiffKD)", 'Expected more than 1 value per channel', '1 sample',
                  'train_dataloader.batch_size >= 2', 'drop_last=True']),
    ('empty-batch', lambda c, p: dict(), lambda: batch(n=0, size=16),
     ValueError, ['training batch is empty', '(0, 3, 16, 16)', 'train_dataloader',
                  'batch_size (>= 1)']),
    # 13. teachers' normalisation, inputs and revise_keys; a KD layer's in_channels
    ('teacher-normalisation-channels',
     lambda c, p: dict(teacher=teacher_cfg(c['digits'], normalisation=dict(
         mean=[1., 2., 3., 4.], std=[1., 1., 1., 1.]))), None,
     ValueError, ['resnet34-wide_digits.py', 'model.teacher.normalisation has 4 channels',
                  "the student's batch, which has 3", 'one mean/std value per channel']),
    ('teacher-inputs-a-label',
     lambda c, p: dict(teacher=teacher_cfg(c['digits'], inputs='gt_label')),
     lambda: batch(n=4, size=16),
     TypeError, ['resnet34-wide_digits.py', 'data_samples[i].gt_label',
                 "model.teacher.inputs='gt_label'", 'Tensor of shape (1,)', 'not an image',
                 '(C, H, W) tensor', "Set model.teacher.inputs to 'inputs'"]),
    ('teacher-inputs-a-string', lambda c, p: dict(teacher=teacher_cfg(c['digits'], inputs='note')),
     lambda: samples_with('note', 'a caption')(4),
     TypeError, ['data_samples[i].note', "model.teacher.inputs='note'", 'holds str',
                 'not an image', '(C, H, W) tensor']),
    ('teacher-inputs-a-number', lambda c, p: dict(teacher=teacher_cfg(c['digits'], inputs='score')),
     lambda: samples_with('score', 3.5)(4),
     TypeError, ['data_samples[i].score', "model.teacher.inputs='score'", 'holds float',
                 'not an image']),
    # issue 34: a frozen teacher's forward options
    ('teacher-precision-unknown',
     lambda c, p: dict(teacher=teacher_cfg(c['digits'], precision='int8')), None,
     ValueError, ["model.teacher.precision='int8'", "['fp32', 'bf16', 'fp16']"]),
    ('teacher-channels-last-not-a-bool',
     lambda c, p: dict(teacher=teacher_cfg(c['digits'], channels_last='yes')), None,
     TypeError, ['model.teacher.channels_last', 'True or False', "'yes'"]),
    ('trainable-teacher-precision',
     lambda c, p: dict(teacher=teacher_cfg(None, trainable=True, precision='bf16')), None,
     ValueError, ['model.teacher', 'frozen', 'trainable teacher', 'AmpOptimWrapper']),
    ('teacher-compile-unknown-option',
     lambda c, p: dict(teacher=teacher_cfg(c['digits'], compile=dict(modes='x'))), None,
     ValueError, ["model.teacher.compile={'modes': 'x'}", 'give True', "['fullgraph', "]),
    ('teacher-cache-not-a-folder',
     lambda c, p: dict(teacher=teacher_cfg(c['digits'], cache=str(p / 'none'))), None,
     TeacherCacheError, ['model.teacher.cache=', 'is not a folder', 'tools/cache_teacher.py']),
    ('teacher-cache-incomplete',
     lambda c, p: dict(teacher=teacher_cfg(c['digits'], cache=str(p))), None,
     TeacherCacheError, ['model.teacher.cache=', 'is incomplete: it has no meta.json',
                         'did not finish']),
    ('teacher-cache-not-a-cache',
     lambda c, p: dict(teacher=teacher_cfg(c['digits'], cache=meta_file(p, '[1, 2]'))), None,
     TeacherCacheError, ['meta.json is not an mmkd teacher cache', "'mmkd-teacher-cache/1'"]),
    ('teacher-cache-meta-too-large',
     lambda c, p: dict(teacher=teacher_cfg(c['digits'], cache=meta_file(p, '{}', 2 ** 26 + 1))),
     None, TeacherCacheError, ['meta.json is 67,108,865 bytes', "more than a cache's"]),
    ('revise-keys-bad-regex',
     lambda c, p: dict(teacher=None, blocks=block(teacher='t:head.fc'), teachers=dict(
         t=teacher_cfg(c['digits'], revise_keys=[('(', '')]))), None,
     ValueError, ["The teacher 't'", 'model.teachers.t.revise_keys', "('(', '')",
                  'unterminated subpattern', '(regex, replacement)', "e.g. [(r'^module"]),
    ('revise-keys-a-string',
     lambda c, p: dict(teacher=teacher_cfg(c['digits'], revise_keys=r'^module\.')), None,
     TypeError, ['The teacher', 'model.teacher.revise_keys must be a list of (regex, '
                 'replacement)', "e.g. [(r'^module", r"got '^module\\.'"]),
    ('kd-layer-in-channels',
     lambda c, p: dict(student_inserts=dict(penult=dict(
         after='backbone.layer4', module=dict(type='KDLayer', in_channels=16, num_templates=8)))),
     None,
     ValueError, ["Insert 'penult'", "after 'backbone.layer4'", 'model.student_inserts.penult',
                  'in_channels=16', '32-channel maps', 'in_channels=32']),
    # 16. built modules where configs are expected
    ('student-a-built-module',
     lambda c, p: dict(student=build(digits_cfg(c['digits']).student)), None,
     TypeError, ['model.student is a built ImageClassifier module', 'model config is expected',
                 'dict(type=', 'path of a config']),
    ('teacher-model-a-built-module',
     lambda c, p: dict(teacher=dict(model=build(Config.fromfile(DIGITS['teacher']).model),
                                    checkpoint=c['digits'])), None,
     TypeError, ['model.teacher.model is a built ImageClassifier module',
                 'model config is expected', 'path of a config']),
]


@pytest.mark.parametrize('overrides,inputs,error,words', [c[1:] for c in MESSAGE_CASES],
                         ids=[c[0] for c in MESSAGE_CASES])
def test_message_names_the_cause_and_the_setting(teacher_ckpts, tmp_path, overrides, inputs,
                                                 error, words):
    cfg = digits_cfg(teacher_ckpts['digits'], **overrides(teacher_ckpts, tmp_path))
    if inputs is None:  # refused at build
        with pytest.raises(error) as e:
            build(cfg)
    else:  # builds; the training batch is refused
        model = build(cfg).train()
        with pytest.raises(error) as e:
            model(*inputs(), mode='loss')
    assert_words(e.value, error, words)


def test_valid_dry_run_shapes_are_kept(teacher_ckpts):
    """A list from a config, numpy integers and a batch of 1 are valid."""
    import numpy as np
    for shape in ([2, 3, 16, 16], (np.int64(1), 3, 16, 16)):
        d = build(digits_cfg(teacher_ckpts['digits'], dry_run_input_shape=shape))
        assert d.dry_run_input_shape == tuple(int(x) for x in shape)


# AT: (student shape, teacher shape, error class or None, words)
AT_CASES = [
    ('equal-area-other-shape', (2, 3, 4, 16), (2, 5, 8, 8), ValueError,
     ['AT', '(2, 3, 4, 16)', '(2, 5, 8, 8)', '4x16 against 8x8', 'same aspect ratio']),
    ('taller-and-narrower', (2, 3, 8, 4), (2, 5, 4, 16), ValueError,
     ['(2, 3, 8, 4)', '(2, 5, 4, 16)', 'no larger than the other in both']),
]


@pytest.mark.parametrize('s_shape,t_shape,error,words', [c[1:] for c in AT_CASES],
                         ids=[c[0] for c in AT_CASES])
def test_at_compares_shapes_not_areas(s_shape, t_shape, error, words):
    s, t = torch.randn(*s_shape), torch.randn(*t_shape)
    with pytest.raises(error) as e:
        AT().build(s, t)  # at build (the dry run), naming both shapes
    assert_words(e.value, error, words)
    at = AT()
    at.build(torch.randn(2, 3, 8, 8), torch.randn(2, 5, 8, 8))
    with pytest.raises(error):  # and in training, where the shapes may differ from the dry run
        at(s, t)


def test_at_pools_the_larger_map_as_before():
    """Sizes nested in both dimensions: the larger map is average-pooled to the smaller (either
    side), as before the shape rule; equal shapes are compared as they are."""
    import torch.nn.functional as F

    def loss(a, b):
        def att(x):
            return F.normalize(x.pow(2).mean(1).flatten(1), dim=1)
        return (att(a) - att(b)).pow(2).mean()
    torch.manual_seed(0)
    big, small, wide = torch.randn(2, 3, 8, 8), torch.randn(2, 5, 4, 4), torch.randn(2, 5, 4, 8)
    for s, t, expected in [
            (big, small, loss(F.adaptive_avg_pool2d(big, (4, 4)), small)),
            (small, big, loss(small, F.adaptive_avg_pool2d(big, (4, 4)))),
            (big, wide, loss(F.adaptive_avg_pool2d(big, (4, 8)), wide)),
            (big, big * 2 + 1, loss(big, big * 2 + 1))]:
        at = AT()
        at.build(s, t)
        assert torch.allclose(at(s, t)['loss_at'], expected)


# ==============================================================================================
# IQA readers (issue 28: items 11, 15)
# Failure catalogue of the IQA dataset readers (issue 28, items 11 and 15): each case makes a
# small dataset in its published layout with one bad file, row or score, and gives the exact error
# class and the words the message must contain (the reader, the file, the row, the value and the
# setting to change). Everything is checked at load, before training starts.
# ==============================================================================================
def _touch(path):
    """An empty stand-in image: the readers check that images exist, not what they hold."""
    os.makedirs(osp.dirname(path), exist_ok=True)
    open(path, 'wb').close()


def _write_csv(path, header, rows):
    with open(path, 'w', newline='') as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


# ----------------------------------------------------------------------------- layouts
def kadid(root, score=None, short_row=False):
    """KADID-10k: 2 references x 3 images; line 3 (I01_01_02.png) gets ``score`` or loses its
    last two fields."""
    rows = [[f'I0{r}_01_0{lv}.png', f'I0{r}.png', '4.00', '0.1'] for r in (1, 2)
            for lv in (1, 2, 3)]
    for name in {n for row in rows for n in row[:2]}:
        _touch(osp.join(root, 'images', name))
    if score is not None:
        rows[1][2] = score
    if short_row:
        rows[1] = rows[1][:2]
    _write_csv(osp.join(root, 'dmos.csv'), ['dist_img', 'ref_img', 'dmos', 'var'], rows)
    return lambda **kw: KADID10kDataset(root, **kw)


def koniq(root, score=None, short_row=False, **options):
    """KonIQ-10k: 6 images; line 4 (2.jpg) gets ``score`` (MOS) or loses MOS and MOS_zscore;
    ``options`` go to the reader."""
    rows = [[f'{i}.jpg', '3.10', f'{10 + 15 * i:.1f}'] for i in range(6)]
    for r in rows:
        _touch(osp.join(root, '1024x768', r[0]))
    if score is not None:
        rows[2][1] = score
    if short_row:
        rows[2] = rows[2][:1]
    _write_csv(osp.join(root, 'koniq10k_scores_and_distributions.csv'),
               ['image_name', 'MOS', 'MOS_zscore'], rows)
    return lambda **kw: KonIQ10kDataset(root, **options, **kw)


def livec(root, mos_variable='AllMOS_release', mos_value=None, mos_file_text=None):
    """LIVE Challenge: 7 training images (skipped) + 6; AllMOS_release(9) gets ``mos_value``;
    the MOS file holds ``mos_variable`` or is replaced by ``mos_file_text``."""
    names = [f't{i}.bmp' for i in range(1, 8)] + [f'{i}.JPG' for i in range(6)]
    for n in names:
        _touch(osp.join(root, 'Images', n))
    cell = np.empty((len(names), 1), dtype=object)
    cell[:, 0] = names
    os.makedirs(osp.join(root, 'Data'))
    savemat(osp.join(root, 'Data', 'AllImages_release.mat'), dict(AllImages_release=cell))
    mos = np.linspace(20, 80, len(names))
    if mos_value is not None:
        mos[8] = mos_value
    path = osp.join(root, 'Data', 'AllMOS_release.mat')
    if mos_file_text is None:
        savemat(path, {mos_variable: mos[None]})
    else:
        with open(path, 'w') as f:
            f.write(mos_file_text)
    return lambda **kw: LIVEChallengeDataset(root, **kw)


def live(root, dmos_value=None, dmos_variable='dmos', remove=None, refnames_text=None):
    """LIVE release 2 (tests/test_iqa.py's fixture); entry 6 of dmos (jp2k/img6.bmp, the first
    that is not a reference copy) gets ``dmos_value``; ``remove`` deletes a file (the string
    'reference of entry 6' deletes that image's reference)."""
    names, _, _ = make_live_fixture(root)
    path = osp.join(root, 'dmos.mat')
    mat = loadmat(path)
    dmos = mat['dmos'].astype(float)
    if dmos_value is not None:
        dmos[0, 5] = dmos_value
    savemat(path, {dmos_variable: dmos, 'orgs': mat['orgs']})
    if remove == 'reference of entry 6':
        os.remove(osp.join(root, 'refimgs', names[5]))
    elif remove:
        os.remove(osp.join(root, remove))
    if refnames_text is not None:
        with open(osp.join(root, 'refnames_all.mat'), 'w') as f:
            f.write(refnames_text)
    return lambda **kw: LIVEDataset(root, **kw)


def without(make, relative):
    """``make``'s layout with the file ``relative`` (to the data root) deleted."""
    def made(root):
        build = make(root)
        os.remove(osp.join(root, relative))
        return build
    return made


# (id, how the bad layout is made: root -> build, exact error class, words the message must
# contain). Item 11: scores off the scale or not finite; item 15: unreadable rows, missing
# images and references, MAT files of another layout or none.
IQA_CASES = [
    # -- item 11: range and finiteness
    ('kadid-score-off-the-scale', lambda root: kadid(root, score='50'),
     ValueError, ['KADID10kDataset', 'dmos.csv', 'line 3', 'I01_01_02.png', 'score 50',
                  'score_range=(1, 5)', 'score_range=(low, high)', 'score_margin']),
    ('kadid-score-nan', lambda root: kadid(root, score='nan'),
     ValueError, ['KADID10kDataset', 'dmos.csv', 'line 3', 'I01_01_02.png', 'score nan',
                  'not a finite number']),
    ('koniq-zscore-read-on-the-mos-scale', lambda root: koniq(root, score_key='MOS_zscore'),
     ValueError, ['KonIQ10kDataset', 'koniq10k_scores_and_distributions.csv', 'line 2',
                  '0.jpg', 'score 10', 'score_range=(low, high)', '0-100']),
    ('live-dmos-nan', lambda root: live(root, dmos_value=np.nan),
     ValueError, ['LIVEDataset', 'dmos.mat', 'dmos(6)', 'jp2k/img6.bmp', 'score nan',
                  'not a finite number']),
    ('live-dmos-off-the-scale', lambda root: live(root, dmos_value=250.0),
     ValueError, ['LIVEDataset', 'dmos.mat', 'dmos(6)', 'jp2k/img6.bmp', 'score 250',
                  'score_range=(0, 100)', 'score_margin']),
    ('livec-mos-infinite', lambda root: livec(root, mos_value=np.inf),
     ValueError, ['LIVEChallengeDataset', 'AllMOS_release.mat', 'AllMOS_release(9)', '1.JPG',
                  'score inf', 'not a finite number']),
    # -- item 15: rows that cannot be read
    ('kadid-score-not-a-number', lambda root: kadid(root, score='good'),
     ValueError, ['KADID10kDataset', 'dmos.csv', 'line 3', 'I01_01_02.png', "'good'",
                  'not a number', 'csv_file']),
    ('kadid-score-empty', lambda root: kadid(root, score=''),
     ValueError, ['KADID10kDataset', 'dmos.csv', 'line 3', 'I01_01_02.png', 'dmos is empty',
                  'csv_file']),
    ('kadid-short-row', lambda root: kadid(root, short_row=True),
     ValueError, ['KADID10kDataset', 'dmos.csv', 'line 3', 'has 2 fields, the header 4',
                  "['dmos', 'var']", 'csv_file']),
    ('koniq-score-not-a-number', lambda root: koniq(root, score='n/a'),
     ValueError, ['KonIQ10kDataset', 'koniq10k_scores_and_distributions.csv', 'line 4',
                  '2.jpg', "'n/a'", 'not a number', "score_key (now 'MOS')"]),
    ('koniq-short-row', lambda root: koniq(root, short_row=True),
     ValueError, ['KonIQ10kDataset', 'line 4', 'has 1 field, the header 3',
                  "['MOS', 'MOS_zscore']", 'csv_file']),
    # -- item 15: images and references missing (at load)
    ('kadid-image-missing', without(kadid, 'images/I01_01_02.png'),
     FileNotFoundError, ['KADID10kDataset', '1 of 6 images', 'I01_01_02.png', 'dmos.csv',
                         'line 3', 'image_folder=', 'data_root=']),
    ('kadid-reference-missing', without(kadid, 'images/I02.png'),
     FileNotFoundError, ['KADID10kDataset', '1 of 2 reference images', 'I02.png', 'dmos.csv',
                         'line 5', 'I02_01_01.png', 'image_folder=']),
    ('koniq-image-missing', without(koniq, '1024x768/5.jpg'),
     FileNotFoundError, ['KonIQ10kDataset', '1 of 6 images', '5.jpg', 'line 7',
                         'image_folder=']),
    ('live-image-missing', lambda root: live(root, remove='jp2k/img6.bmp'),
     FileNotFoundError, ['LIVEDataset', 'images listed', 'jp2k/img6.bmp', 'dmos.mat',
                         'dmos(6)', 'data_root=']),
    ('live-reference-missing', lambda root: live(root, remove='reference of entry 6'),
     FileNotFoundError, ['LIVEDataset', 'reference images', 'refimgs', 'dmos.mat',
                         'data_root=']),
    ('livec-image-missing', without(livec, 'Images/3.JPG'),
     FileNotFoundError, ['LIVEChallengeDataset', '1 of 6 images', '3.JPG', 'AllMOS_release(11)',
                         'data_root=']),
    # -- item 15: MAT files of another layout, or not MAT files
    ('livec-mat-other-variable', lambda root: livec(root, mos_variable='mos'),
     KeyError, ['LIVEChallengeDataset', 'AllMOS_release.mat', "no variable 'AllMOS_release'",
                "['mos']", 'mos_key=']),
    ('livec-mat-not-a-mat-file',
     lambda root: livec(root, mos_file_text='name,mos\n' + 't1.bmp,60\n' * 20),
     ValueError, ['LIVEChallengeDataset', 'AllMOS_release.mat', 'is not a MAT file',
                  "variable 'AllMOS_release'"]),
    ('livec-mat-empty-file', lambda root: livec(root, mos_file_text=''),
     ValueError, ['LIVEChallengeDataset', 'AllMOS_release.mat', 'is not a MAT file',
                  "variable 'AllMOS_release'"]),
    ('live-mat-other-variable', lambda root: live(root, dmos_variable='scores'),
     KeyError, ['LIVEDataset', 'dmos.mat', "no variable 'dmos'", "['orgs', 'scores']",
                "dmos_file='dmos.mat'", 'dmos_realigned.mat']),
    ('live-mat-not-a-mat-file', lambda root: live(root, refnames_text='ref00.bmp\nref01.bmp\n'),
     ValueError, ['LIVEDataset', 'refnames_all.mat', 'is not a MAT file', 'refnames_all)']),
]


@pytest.mark.parametrize('make,error,words', [c[1:] for c in IQA_CASES],
                         ids=[c[0] for c in IQA_CASES])
def test_iqa_reader_names_file_row_and_setting(tmp_path, make, error, words):
    build = make(str(tmp_path))
    with pytest.raises(error) as e:
        build()
    assert_words(e.value, error, words)


def test_scores_a_little_outside_the_scale_are_kept_and_the_margin_is_a_setting(tmp_path):
    """The tolerance: 5.9 on KADID's 1-5 is inside the default margin (0 .. 6) and maps a little
    outside [0, 1]; score_margin=0 refuses it; a bad margin is refused at build."""
    build = kadid(str(tmp_path), score='5.9')
    parts = [build(split=split) for split in ('train', 'test')]
    infos = [part.get_data_info(i) for part in parts for i in range(len(part))]
    info = next(i for i in infos if i['img_path'].endswith('I01_01_02.png'))
    assert info['gt_score'][0] == pytest.approx((5.9 - 1) / 4)
    with pytest.raises(ValueError, match='score_margin=0'):
        build(score_margin=0)
    with pytest.raises(ValueError, match='score_margin must be a finite number >= 0'):
        build(score_margin=-0.1)


# ==============================================================================================
# Training logs (issue 29): what tools/analysis/plot_curves.py reads
# ==============================================================================================
@pytest.mark.parametrize('bad_line', ['{"loss": ', '[1, 2]', '__import__("os")'],
                         ids=['cut', 'not-an-object', 'code'])
def test_a_damaged_training_log_stops_the_plot_naming_file_and_line(tmp_path, bad_line):
    spec = importlib.util.spec_from_file_location(
        'plot_curves', osp.join(REPO, 'tools', 'analysis', 'plot_curves.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    vis = tmp_path / '20260101_000000' / 'vis_data'
    vis.mkdir(parents=True)
    good = '{"loss": 1.0, "iter": 1, "step": 1}\n'
    (vis / 'scalars.json').write_text(good + bad_line + '\n' + good)
    with pytest.raises(SystemExit) as e:
        tool.main([str(tmp_path), '--out', str(tmp_path / 'c.png')])
    assert 'scalars.json, line 2: not a JSON object' in str(e.value) and 'damaged' in str(e.value)
    assert not (tmp_path / 'c.png').exists()


# ==============================================================================================
# The agreement metric's own teachers (issue 33): mmkd.TeacherStudentAgreement(teachers=dict(
# name=dict(config=..., checkpoint=...))) builds and loads each teacher at its first batch, with
# the distiller's builder and strict, safe loader; every refusal names the teacher (and file).
# ==============================================================================================
def _agreement_batch():
    from mmpretrain.structures import DataSample
    inputs = [torch.randint(0, 255, (3, 16, 16), dtype=torch.uint8) for _ in range(2)]
    samples = [DataSample().set_gt_label(i) for i in range(2)]
    outputs = [DataSample().set_gt_label(i).set_pred_score(torch.full((10, ), 0.1))
               for i in range(2)]
    for o in outputs:
        o.teacher_predictions = {}
    return dict(inputs=inputs, data_samples=samples), [o.to_dict() for o in outputs]


def _agreement_cases(tmp_path, ckpts):
    student_ckpt = random_teacher_checkpoint(DIGITS['student'], str(tmp_path / 's.pth'))
    nan_ckpt = nan_teacher_checkpoint(str(tmp_path / 'nan.pth'))
    bare = Config.fromfile(DIGITS['teacher']).model.to_dict()  # no data_preprocessor
    return [
        ('missing-checkpoint', dict(config=DIGITS['teacher'],
                                    checkpoint=str(tmp_path / 'nowhere.pth')),
         FileNotFoundError, ["teacher 't'", 'nowhere.pth']),
        ('checkpoint-of-another-model', dict(config=DIGITS['teacher'], checkpoint=student_ckpt),
         RuntimeError, ["teacher 't'", 's.pth', 'does not match', 'missing keys']),
        ('nan-weights', dict(config=DIGITS['teacher'], checkpoint=nan_ckpt),
         FloatingPointError, ["teacher 't'", 'nan.pth', 'NaN/inf']),
        ('missing-config', dict(config=str(tmp_path / 'nope.py'), checkpoint=ckpts['digits']),
         FileNotFoundError, ['nope.py']),
        ('model-without-data-preprocessor', dict(model=bare, checkpoint=ckpts['digits']),
         KeyError, ['teachers.t', 'data_preprocessor']),
    ]


@pytest.mark.parametrize('case', ['missing-checkpoint', 'checkpoint-of-another-model',
                                  'nan-weights', 'missing-config',
                                  'model-without-data-preprocessor'])
def test_agreement_metric_teacher_names_teacher_and_file(case, teacher_ckpts, tmp_path):
    from mmkd.evaluation.agreement import TeacherStudentAgreement
    spec, error, words = next((c[1:] for c in _agreement_cases(tmp_path, teacher_ckpts)
                               if c[0] == case))
    data_batch, outputs = _agreement_batch()
    metric = TeacherStudentAgreement(teachers=dict(t=spec))
    with pytest.raises(error) as info:
        metric.process(data_batch, outputs)
    assert_words(info.value, error, words)


@pytest.mark.parametrize('kwargs,error,words', [
    (dict(teachers=dict(t=dict(config='x.py'))), KeyError, ['teachers.t', 'checkpoint']),
    (dict(teachers=dict(t=dict(config='x.py', model={}, checkpoint='c'))), KeyError,
     ['teachers.t', 'config', 'model']),
    (dict(teachers=dict(t=dict(config='x.py', checkpoint='c', trainable=True))), KeyError,
     ['teachers.t', 'unknown keys', 'trainable', 'revise_keys']),
    (dict(teachers=3), TypeError, ['teachers must be', 'list of teacher names']),
    (dict(num_bins=0), ValueError, ['num_bins', '>= 1']),
    (dict(score_thr=1.5), ValueError, ['score_thr', '[0, 1)']),
    (dict(iou_thr=0), ValueError, ['iou_thr', '(0, 1]']),
])
def test_agreement_metric_bad_arguments(kwargs, error, words):
    from mmkd.evaluation.agreement import TeacherStudentAgreement
    with pytest.raises(error) as info:
        TeacherStudentAgreement(**kwargs)
    assert_words(info.value, error, words)
