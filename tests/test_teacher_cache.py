"""Cached teacher outputs (issue 34, item 1): tools/cache_teacher.py and the ``cached`` kind.

Exactness: a run from an fp32 cache ends with the same student weights, bit for bit, as the
live-teacher run (same seed, CPU, one thread). Fingerprint: a run whose batches or teacher
differ is refused naming the keys. Damage: a missing ``meta.json``, a truncated file, flipped
bytes and a batch the cache does not hold are each refused naming the cause. Top-K: the
rebuilt logits keep the teacher's top-K probabilities and the rest's mass, and only logit
methods may read them.
"""
import copy
import json
import os
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config

from conftest import DIGITS, load_tool_module, run_tool

ONE_THREAD = dict(OMP_NUM_THREADS='1')


def small_config(folder, teacher: str) -> str:
    """Digits KD cut to 2 epochs of 3 batches, with a feature block on a tuple output (the
    backbone's) besides the logits."""
    path = osp.join(folder, 'kd_small.py')
    with open(path, 'w') as f:
        f.write('\n'.join([
            f'_base_ = {DIGITS["distill"]!r}',
            'model = dict(',
            f'    teacher=dict(checkpoint={teacher!r}),',
            '    blocks=dict(',
            "        feat=dict(student='backbone', teacher='backbone',",
            "                  method=dict(type='FeatureMSE'), loss_weight=0.1)))",
            'train_cfg = dict(max_epochs=2, val_interval=2)',
            'train_dataloader = dict(dataset=dict(indices=192))',
            'val_dataloader = dict(dataset=dict(indices=64))',
            'test_dataloader = val_dataloader',
            'default_hooks = dict(logger=dict(interval=1), '
            'checkpoint=dict(interval=1, max_keep_ckpts=2))']) + '\n')
    return path


@pytest.fixture(scope='module')
def runs(tmp_path_factory, teacher_ckpts):
    """The cache (fp32), a live run and a cached run of the same config."""
    root = tmp_path_factory.mktemp('teacher_cache')
    config = small_config(str(root), teacher_ckpts['digits'])
    cache = str(root / 'cache')
    built = run_tool(['tools/cache_teacher.py', config, '--out', cache], env=ONE_THREAD).stdout
    live = run_tool(['tools/train.py', config, '--work-dir', str(root / 'live')],
                    env=ONE_THREAD).stdout
    cached = run_tool(['tools/train.py', config, '--work-dir', str(root / 'cached'),
                       '--cfg-options', f'model.teacher.cache={cache}'], env=ONE_THREAD).stdout
    return dict(root=root, config=config, cache=cache, built=built, live=live, cached=cached)


def test_cached_run_equals_the_live_run_bit_for_bit(runs):
    root = runs['root']
    live = torch.load(root / 'live' / 'epoch_2.pth', map_location='cpu')['state_dict']
    cached = torch.load(root / 'cached' / 'epoch_2.pth', map_location='cpu')['state_dict']
    assert live.keys() == cached.keys()
    different = [k for k in live if not torch.equal(live[k], cached[k])]
    assert not different, different[:5]
    # The students did learn (the weights moved), and both runs logged the same losses.
    assert 'distill.feat.loss' in runs['cached'] and 'distill.logits.loss_kd' in runs['cached']
    losses = [line.split('loss:')[1].split()[0] for line in runs['live'].splitlines()
              if 'Epoch(train)' in line]
    assert losses == [line.split('loss:')[1].split()[0]
                      for line in runs['cached'].splitlines() if 'Epoch(train)' in line]
    assert len(losses) == 6  # 2 epochs x 3 batches
    meta = json.load(open(osp.join(runs['cache'], 'meta.json')))
    assert meta['samples'] == 384 and meta['epochs'] == 2 and meta['world_size'] == 1
    points = meta['teachers']['teacher']['points']
    assert sorted(points) == ['backbone', 'head.fc']
    # head.fc: 10 float32 logits; backbone: one (C, h, w) float32 map per sample.
    feat = meta['teachers']['teacher']['layouts']['backbone']
    assert feat['struct'] == 'tuple'
    shape = feat['components'][0]['arrays'][0][2]
    assert meta['teachers']['teacher']['bytes_per_sample'] == 4 * (10 + int(np.prod(shape)))
    assert 'bytes per sample per epoch' in runs['built']


def test_a_resumed_run_finds_its_batches(runs, tmp_path):
    """--resume from the cached run's epoch-1 checkpoint: the cache holds epoch 2's batches
    (found by their digest) and the run ends with the uninterrupted run's weights."""
    import shutil
    work = tmp_path / 'resumed'
    work.mkdir()
    shutil.copy(runs['root'] / 'cached' / 'epoch_1.pth', work / 'epoch_1.pth')
    (work / 'last_checkpoint').write_text(str(work / 'epoch_1.pth'))
    run_tool(['tools/train.py', runs['config'], '--work-dir', str(work), '--resume',
              '--cfg-options', f'model.teacher.cache={runs["cache"]}'], env=ONE_THREAD)
    resumed = torch.load(work / 'epoch_2.pth', map_location='cpu')['state_dict']
    whole = torch.load(runs['root'] / 'cached' / 'epoch_2.pth', map_location='cpu')['state_dict']
    assert all(torch.equal(resumed[k], whole[k]) for k in whole)


def test_testing_needs_no_cache(runs):
    """tools/test.py reads no teacher values: a config whose cache is elsewhere (or gone)
    still tests the student, with the accuracy the run logged."""
    out = run_tool(['tools/test.py', runs['config'], str(runs['root'] / 'cached' / 'epoch_2.pth'),
                    '--work-dir', str(runs['root'] / 'test'), '--cfg-options',
                    'model.teacher.cache=/no/such/cache'], env=ONE_THREAD).stdout
    score = out.split('accuracy/top1: ')[-1].split()[0]
    assert score == runs['cached'].split('accuracy/top1: ')[-1].split()[0]


def test_a_cache_for_other_batches_is_refused_naming_what_differs(runs):
    out = run_tool(['tools/train.py', runs['config'], '--work-dir',
                    str(runs['root'] / 'other'), '--cfg-options',
                    f'model.teacher.cache={runs["cache"]}', 'train_dataloader.batch_size=32',
                    'randomness.seed=1'], env=ONE_THREAD, check=False)
    assert out.returncode != 0
    assert 'train_dataloader.batch_size: cache 64, this run 32' in out.stdout
    assert 'randomness.seed: cache 0, this run 1' in out.stdout
    assert 'Epoch(train)' not in out.stdout  # refused before the first step


def cached_model(runs, **teacher):
    """The config's distiller as the Runner builds it, its teacher read from the cache."""
    cfg = Config.fromfile(runs['config'])
    model = copy.deepcopy(cfg.model)
    model.setdefault('data_preprocessor', cfg.data_preprocessor)
    model.teacher.update(cache=runs['cache'], **teacher)
    model.blocks = dict(logits=dict(student='head.fc', teacher='head.fc',
                                    method=dict(type='LogitKD', tau=4.0)))
    return model


def build(model):
    from mmkd.registry import MODELS
    return MODELS.build(model)


def test_the_teacher_side_is_fingerprinted_at_build(runs, teacher_ckpts):
    distiller = build(cached_model(runs))
    t = distiller.teacher_info('teacher')
    assert t.kind == 'cached' and t.model is None and distiller.teachers == {}
    # Another checkpoint (other weights) or another view of the batch: refused, named.
    with pytest.raises(RuntimeError, match=r'teacher\.checkpoint: cache sha256:'):
        build(cached_model(runs, checkpoint=teacher_ckpts['digits_wrn']))
    with pytest.raises(RuntimeError, match=r"teacher\.precision: cache 'fp32', this run 'bf16'"):
        build(cached_model(runs, precision='bf16'))


def test_what_a_cached_teacher_cannot_do(runs):
    model = cached_model(runs)
    model.blocks = dict(neck=dict(student='neck', teacher='neck',
                                  method=dict(type='FeatureMSE')))
    with pytest.raises(KeyError, match=r"point 'neck' is not in the cache .* holds"):
        build(model)
    model.blocks = dict(all=dict(student='backbone', teacher='backbone.*',
                                 method=dict(type='FeatureMSE')))
    with pytest.raises(ValueError, match='is a pattern; a cached teacher has no model'):
        build(model)
    with pytest.raises(ValueError, match='does not learn'):
        build(cached_model(runs, trainable=True))
    model = cached_model(runs)
    model.eval_teacher = 'teacher'
    with pytest.raises(ValueError, match='has no model of its own to test'):
        build(model)
    model = cached_model(runs)
    model.val_teachers = ['teacher']
    with pytest.raises(KeyError, match='not a teacher with a forward of its own'):
        build(model)


def test_a_method_that_reads_the_teachers_modules_is_refused(runs):
    from mmkd.methods.logit_kd import LogitKD
    from mmkd.registry import MODELS

    class ModuleReadingKD(LogitKD):
        def bind_teachers(self, teachers):
            self.teachers = teachers

    MODELS.register_module('TestModuleReadingKD', module=ModuleReadingKD, force=True)
    model = cached_model(runs)
    model.blocks.logits.method = dict(type='TestModuleReadingKD', tau=4.0)
    with pytest.raises(ValueError, match=r"ModuleReadingKD reads the teacher's own modules"):
        build(model)


def reader(runs, folder=None):
    from mmkd.distillers.teacher_cache import CacheReader
    return CacheReader(folder or runs['cache'], 'teacher', 0, 1, 'model.teacher')


def copy_cache(runs, tmp_path):
    import shutil
    folder = str(tmp_path / 'copy')
    shutil.copytree(runs['cache'], folder)
    return folder


def test_damaged_or_incomplete_caches_are_detected(runs, tmp_path):
    from mmkd.distillers.teacher_cache import TeacherCacheError
    good = reader(runs)
    digest = next(iter(good.index))
    values = good.read(digest, 'cpu')
    assert values['head.fc'].shape == (64, 10) and isinstance(values['backbone'], tuple)
    with pytest.raises(TeacherCacheError, match='this training batch is not in the teacher'):
        good.read(b'\0' * 16, 'cpu')

    folder = copy_cache(runs, tmp_path)
    data = osp.join(folder, 'teacher', 'r0.p1.c0.value.bin')
    point = good.points[1]
    # Flipped bytes: found by the batch's CRC-32 when it is read.
    blob = bytearray(open(data, 'rb').read())
    blob[100] ^= 0xFF
    open(data, 'wb').write(bytes(blob))
    damaged = reader(runs, folder)
    with pytest.raises(TeacherCacheError, match=rf"rows 0\.\.63 of point '{point}' fail"):
        damaged.read(digest, 'cpu')
    # Truncated: found when the cache is opened.
    open(data, 'wb').write(bytes(blob[:-8]))
    with pytest.raises(TeacherCacheError, match=r'r0\.p1\.c0\.value\.bin is .* bytes, '
                       r'meta\.json says'):
        reader(runs, folder)
    # The index damaged, meta.json damaged, and no meta.json (the tool did not finish).
    open(osp.join(folder, 'teacher', 'r0.index.npz'), 'wb').write(b'PK\3\4 not a zip')
    with pytest.raises(TeacherCacheError, match='index .* is missing or damaged'):
        reader(runs, folder)
    open(osp.join(folder, 'meta.json'), 'w').write('{"format": ')
    with pytest.raises(TeacherCacheError, match=r'meta\.json is damaged \(not JSON'):
        reader(runs, folder)
    os.remove(osp.join(folder, 'meta.json'))
    with pytest.raises(TeacherCacheError, match='is incomplete: it has no meta.json'):
        reader(runs, folder)
    with pytest.raises(TeacherCacheError, match='built for world_size 1'):
        from mmkd.distillers.teacher_cache import CacheReader
        CacheReader(runs['cache'], 'teacher', 0, 2, 'model.teacher')


def test_non_finite_cached_values_are_named_at_build(runs, tmp_path):
    from mmkd.distillers import NonFiniteError
    folder = copy_cache(runs, tmp_path)
    index = reader(runs).points.index('head.fc')
    data = osp.join(folder, 'teacher', f'r0.p{index}.c0.value.bin')
    values = np.fromfile(data, np.float32)
    values[3] = np.nan  # the first sample's fourth logit
    values.tofile(data)
    with pytest.raises(NonFiniteError, match=r"the cache .* holds NaN values at 'head.fc' "
                       r'\(its first samples\)'):
        build(cached_model(dict(runs, cache=folder)))


def test_topk_keeps_the_top_probabilities_and_the_rest_mass():
    from mmkd.distillers.teacher_cache import decode, encode, layout_of
    torch.manual_seed(0)
    z = torch.randn(32, 100) * 3
    layout = layout_of(z, 'head.fc', 'fp32', topk=5)
    assert [a[0] for a in layout['components'][0]['arrays']] == ['values', 'indices', 'fill']
    rebuilt = decode(encode(z, layout), layout, 'cpu')
    top, idx = z.topk(5, dim=1)
    assert torch.equal(rebuilt.gather(1, idx), top)  # fp32: the top logits exactly
    p, q = z.softmax(1), rebuilt.softmax(1)
    torch.testing.assert_close(q.gather(1, idx), p.gather(1, idx), rtol=1e-5, atol=1e-7)
    rest = torch.ones_like(z, dtype=torch.bool).scatter_(1, idx, False)
    # The other 95 classes share the rest of the mass equally.
    torch.testing.assert_close((q * rest).sum(1), (p * rest).sum(1), rtol=1e-5, atol=1e-7)
    others = q[rest].view(32, 95)
    torch.testing.assert_close(others, others[:, :1].expand(32, 95))
    # fp16 storage: the top logits to fp16 precision; 2 + 2 + 4 bytes per kept logit/sample.
    half = layout_of(z, 'head.fc', 'fp16', topk=5)
    rebuilt16 = decode(encode(z, half), half, 'cpu')
    torch.testing.assert_close(rebuilt16.gather(1, idx), top, rtol=1e-3, atol=1e-2)
    assert rebuilt16.dtype == torch.float32


def test_topk_cache_trains_logit_methods_only(runs, tmp_path):
    """--topk through the tool: a LogitKD run trains from it; a feature block is refused."""
    config = str(tmp_path / 'kd_logits.py')
    with open(config, 'w') as f:
        f.write(f'_base_ = {runs["config"]!r}\n'
                "model = dict(blocks=dict(_delete_=True, logits=dict(student='head.fc', "
                "teacher='head.fc', method=dict(type='LogitKD', tau=4.0))))\n"
                'train_cfg = dict(max_epochs=1, val_interval=1)\n')
    cache = str(tmp_path / 'top3')
    built = run_tool(['tools/cache_teacher.py', config, '--out', cache, '--topk', '3',
                      '--dtype', 'fp16'], env=ONE_THREAD).stdout
    assert 'top-3 error at teacher:head.fc: kl_T1' in built
    meta = json.load(open(osp.join(cache, 'meta.json')))
    assert meta['teachers']['teacher']['bytes_per_sample'] == 3 * 2 + 3 * 2 + 4
    assert meta['topk_error']['teacher:head.fc']['tv_T1'] > 0
    out = run_tool(['tools/train.py', config, '--work-dir', str(tmp_path / 'w'),
                    '--cfg-options', f'model.teacher.cache={cache}'], env=ONE_THREAD).stdout
    assert 'Epoch(train) [1][3/3]' in out
    model = cached_model(dict(runs, cache=cache))
    model.blocks.logits.method = dict(type='RKD')
    with pytest.raises(ValueError, match='stores .* as top-K logits, which only a method'):
        build(model)


def test_the_tool_refuses_before_building(runs, tmp_path):
    tool = load_tool_module('tools/cache_teacher.py')
    with pytest.raises(SystemExit, match='holds a complete cache already'):
        tool.main(tool.parse_args([runs['config'], '--out', runs['cache']]))
    with pytest.raises(SystemExit, match=r'randomness=dict\(seed=\.\.\.\)'):
        tool.main(tool.parse_args([runs['config'], '--out', str(tmp_path / 'c'),
                                   '--cfg-options', 'randomness.seed=None']))
    with pytest.raises(SystemExit):
        tool.parse_args([runs['config'], '--out', str(tmp_path / 'c'), '--topk', '0'])
