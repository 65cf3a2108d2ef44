"""The benchmark scripts run on a tiny setting and write what they promise."""
import argparse
import importlib.util
import json
import os.path as osp
import re
import statistics
import sys

import pytest
import torch
from conftest import DIGITS, REPO, run_tool


def _benchmark_tool(name: str):
    """Import tools/benchmark/<name>.py (a script, not a package module)."""
    spec = importlib.util.spec_from_file_location(
        f'{name}_tool', osp.join(REPO, 'tools', 'benchmark', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_overhead_summary_from_rounds_by_hand():
    ov = _benchmark_tool('overhead')
    rounds = [dict(student=10.0, teacher=5.0, methods=1.0, distill=17.0),
              dict(student=20.0, teacher=10.0, methods=2.0, distill=33.0),
              dict(student=10.0, teacher=5.0, methods=1.0, distill=16.5)]
    memory = {p: dict(mem_mib=m) for p, m in zip(ov.PHASES, (4.0, 6.0, 1.0, 9.0))}
    r = ov.summarise(rounds, memory)
    # Per round d / (s + t): 17/15, 33/30, 16.5/15 -> median 1.1; remainders 1, 1, 0.5 ms.
    assert r['time_ratio'] == pytest.approx(1.1)
    assert r['derived']['time_ratio']['max'] == pytest.approx(17 / 15)
    assert r['time_ratio_with_methods'] == pytest.approx(16.5 / 16)  # 17/16, 33/32, 16.5/16
    assert r['remainder_ms'] == pytest.approx(1.0)
    assert r['derived']['remainder_ms']['min'] == pytest.approx(0.5)
    assert r['remainder_pct'] == pytest.approx(100 / 33)  # 100/17, 100/33, 50/16.5
    assert r['student_median_s'] == pytest.approx(0.010)
    assert r['time_ms']['distill']['q1'] == pytest.approx(16.75)  # inclusive quartiles
    assert r['memory_ratio'] == pytest.approx(9 / 10)
    assert r['memory_ratio_with_methods'] == pytest.approx(9 / 11)
    assert r['distill_over_student'] == pytest.approx(1.65)  # 17/10, 33/20, 16.5/10


def test_overhead_cached_teacher_gives_the_live_losses():
    """--teacher-cache: the distill phase's distiller reads a cache of the batch written from
    the live one, and its losses on that batch are the live distiller's, bit for bit."""
    ov = _benchmark_tool('overhead')
    (cached, live), inputs, samples = ov.build(DIGITS['distill'], 'cpu', True, 8,
                                               cache=dict(dtype='fp32', topk=None))
    assert cached.teacher_info('teacher').kind == 'cached' and not cached.teachers
    assert live.teacher_info('teacher').kind == 'frozen'
    cached.load_state_dict(live.state_dict())
    a, b = cached(inputs, samples, mode='loss'), live(inputs, samples, mode='loss')
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), {k: (a[k], b[k]) for k in a}


def test_overhead_discovers_distillers_by_model_type(tmp_path):
    ov = _benchmark_tool('overhead')
    distiller = "model = dict(type='mmkd.Distiller', student=dict(), blocks=dict())\n"
    (tmp_path / 'sub').mkdir()
    (tmp_path / 'sub' / 'zz_no_hint_in_name.py').write_text(distiller)
    (tmp_path / 'sub' / '_base_distill.py').write_text(distiller)  # inherited, never run
    (tmp_path / 'sub' / 'kd_student.py').write_text("model = dict(type='ImageClassifier')\n")
    found = ov.demo_distill_configs(str(tmp_path))
    assert [osp.basename(f) for f in found] == ['zz_no_hint_in_name.py']


def test_overhead_benchmark_all_demo_tiny(tmp_path):
    # A demo folder holding the digits KD config (inherited) and a _base_ file to skip.
    root = tmp_path / 'demo'
    root.mkdir()
    (root / 'kd_tiny.py').write_text(f"_base_ = {DIGITS['distill']!r}\n")
    (root / '_base_distill.py').write_text(f"_base_ = {DIGITS['distill']!r}\n")
    out_dir = tmp_path / 'out'
    proc = run_tool(['tools/benchmark/overhead.py', '--all-demo', '--demo-root', str(root),
                     '--steps', '2', '--warmup', '1', '--batch-size', '8', '--random-teacher',
                     '--threads', '1', '--breakdown', '--out-dir', str(out_dir)])
    assert [p.name for p in out_dir.iterdir()] == ['overhead_kd_tiny.json']
    assert re.search(r'time ratio\s+distill / \(student \+ teacher\) = \d+\.\d+', proc.stdout)
    assert re.search(r'memory ratio distill / \(student \+ teacher\) = \d+\.\d+', proc.stdout)
    assert re.search(r'remainder\s+distill - \(student \+ teacher \+ methods\) = -?\d', proc.stdout)
    assert '| demo `kd_tiny` | LogitKD | 8 × 3×16×16 |' in proc.stdout
    r = json.loads((out_dir / 'overhead_kd_tiny.json').read_text())
    assert r['batch_size'] == 8 and r['methods'] == ['LogitKD'] and r['torch_threads'] == 1
    phases = ('student', 'teacher', 'methods', 'distill')
    # Two timed rounds, each phase once per round, in a shuffled order.
    assert len(r['rounds']) == 2
    assert all(sorted(rd['order']) == sorted(phases) for rd in r['rounds'])
    times = {p: [rd[p] for rd in r['rounds']] for p in phases}
    assert all(t > 0 for ts in times.values() for t in ts)
    # The reported numbers are those of the measured rounds.
    for p in phases:
        assert r[f'{p}_median_s'] == pytest.approx(statistics.median(times[p]) / 1e3)
    ratio = [d / (s + t) for s, t, d in zip(times['student'], times['teacher'], times['distill'])]
    rest = [d - (s + t + m) for s, t, m, d in zip(*(times[p] for p in phases))]
    assert r['time_ratio'] == pytest.approx(statistics.median(ratio))
    assert r['remainder_ms'] == pytest.approx(statistics.median(rest))
    # The full step runs two ResNets; the methods phase is a KL on 8 x 10 logits.
    assert min(times['distill']) > max(times['methods'])
    # Separate state per phase: the distill phase holds exactly the others' weights and
    # optimizer state (student + momentum, teacher, no method parameters for LogitKD).
    mem = r['memory']
    assert mem['methods']['resident_mib'] == 0
    assert mem['distill']['resident_mib'] == pytest.approx(
        mem['student']['resident_mib'] + mem['teacher']['resident_mib'])
    assert r['memory_ratio'] == pytest.approx(
        r['distill_mem_mib'] / (r['student_mem_mib'] + r['teacher_mem_mib']))
    assert r['distill_mem_mib'] > r['student_mem_mib'] > 0
    # --breakdown: the timed parts of the distill step lie inside it, none counted twice.
    for rd in r['rounds']:
        parts = rd['parts']['distill']
        assert set(parts) == {'teacher', 'student', 'methods', 'finite_check', 'backward',
                              'optimizer', 'other'}
        assert parts['other'] >= 0 and parts['teacher'] > 0 and parts['student'] > 0
        assert sum(parts.values()) == pytest.approx(rd['distill'])
    assert 'parts of the distill step (median ms): teacher' in proc.stdout


def test_quality_grid_tiny(tmp_path):
    """The grid on the two-teacher ensemble config: both digits teachers trained once, the
    baseline, and the method as configured and at weight 0 (a variant)."""
    out = tmp_path / 'out'
    proc = run_tool(['tools/benchmark/quality.py', '--tasks', 'classification', '--methods',
                     'ens', '--seeds', '0', '--work-dir', str(tmp_path / 'runs'),
                     '--teacher-work-dir', str(tmp_path / 'teachers'), '--out', str(out),
                     '--cfg-options', 'train_cfg.max_epochs=1',
                     'train_dataloader.dataset.max_train=200',
                     '--variant', 'w0', 'model.blocks.logits.loss_weight=0.0', '--variant', 'as'])
    table = (out / 'quality.md').read_text()
    assert '| classification | test | top-1 (%) | ens[w0] |' in table
    assert '| classification | test | top-1 (%) | ens[as] |' in table
    assert (out / 'quality.png').stat().st_size > 1000
    rows = json.loads((out / 'quality.json').read_text())['rows']
    assert [r['method'] for r in rows] == ['ens[w0]', 'ens[as]']
    assert all(len(r['distilled']) == 1 for r in rows)
    assert rows[0]['options'] == ['model.blocks.logits.loss_weight=0.0'] and not rows[1]['options']
    # Weight 0 leaves the student's training unchanged: the same seed gives the baseline's score
    # (one thread per run, so the runs are bitwise repeatable).
    assert rows[0]['distilled'] == rows[0]['student']
    assert set(rows[0]['teachers']) == {'classification/teacher', 'classification/teacher_wrn'}
    for name in ('teacher', 'teacher_wrn'):
        assert (tmp_path / 'teachers' / 'digits' / f'{name}.pth').exists()
    assert 'gap closed' in proc.stdout


def test_grid_stops_on_a_failed_run_and_says_which(tmp_path):
    """A run that fails stops the grid: exit non-zero, the failing command and its log named,
    no table written as if the grid had run."""
    out = tmp_path / 'out'
    proc = run_tool(['tools/benchmark/quality.py', '--tasks', 'classification', '--methods',
                     'kd', 'vkd', '--seeds', '0', '--work-dir', str(tmp_path / 'runs'),
                     '--teacher-work-dir', str(tmp_path / 'teachers'), '--out', str(out),
                     '--cfg-options', 'train_dataloader.dataset.split=nope'], check=False)
    assert proc.returncode != 0
    assert 'Training failed' in proc.stdout and 'demo_stdout.log' in proc.stdout
    assert "split='nope'" in proc.stdout or "'nope'" in proc.stdout
    assert not out.exists()


def test_no_run_starts_once_a_run_has_failed(tmp_path, monkeypatch):
    """After a failure the grid kills the runs in progress; a worker thread that reaches its
    start only then must not launch a process nobody will stop."""
    _benchmark_tool('quality')
    demo = sys.modules['demo']
    started = []
    monkeypatch.setattr(demo.subprocess, 'Popen', lambda *a, **k: started.append(a))
    monkeypatch.setattr(demo, '_stopping', demo.threading.Event())
    demo._stopping.set()
    with pytest.raises(demo.RunFailed, match='another run failed'):
        demo.train(DIGITS['student'], str(tmp_path / 'run'), 'accuracy/top1')
    assert not started


def test_kept_teacher_is_reused_only_from_the_same_config_and_options(tmp_path, monkeypatch):
    """A teacher trained from another config (or other --cfg-options) is trained again, never
    silently reused; the same one is reused without training."""
    import torch
    _benchmark_tool('quality')  # imports tools/demo.py as 'demo'
    demo = sys.modules['demo']
    trained = []

    def fake_train(config, work_dir, metric, options=(), scale=1.0, threads=None):
        trained.append(list(options))
        ckpt = tmp_path / f'epoch_{len(trained)}.pth'
        torch.save(dict(state_dict=dict(w=torch.zeros(1))), ckpt)
        work = tmp_path / 'teachers' / osp.basename(work_dir)
        work.mkdir(parents=True, exist_ok=True)
        (work / 'last_checkpoint').write_text(str(ckpt))
        return 50.0 + len(trained)
    monkeypatch.setattr(demo, 'train', fake_train)
    spec = demo.TASKS['classification']
    root = str(tmp_path / 'teachers')
    first = demo.ensure_teacher('classification', spec, False, root)
    assert first[0] == 51.0 and trained == [['randomness.seed=0']]
    assert demo.ensure_teacher('classification', spec, False, root) == first  # reused
    # other options (the tune split), then another config under the same name: trained again
    assert demo.ensure_teacher('classification', spec, False, root, ['a.b=1'])[0] == 52.0
    assert demo.ensure_teacher('classification', spec, False, root, ['a.b=1'])[0] == 52.0
    other = spec['extra_teachers']['teacher_wrn']
    assert demo.ensure_teacher('classification', spec, False, root, ['a.b=1'],
                               config=other)[0] == 53.0
    assert demo.ensure_teacher('classification', spec, True, root, ['a.b=1'],
                               config=other)[0] == 54.0  # --retrain-teachers
    assert len(trained) == 4


def test_grid_method_selection_and_summary():
    quality = _benchmark_tool('quality')
    demo = sys.modules['demo']
    chosen = demo.select_methods(['classification', 'detection'], ['vkd', 'diffkd'])
    assert [m for m, _ in chosen['classification']] == ['vkd', 'diffkd']
    assert chosen['detection'][1][1] == (
        'configs/demo/shapes_det/diffkd_retinanet_r34-wide_r18-tiny_fpn_shapes.py')
    # kd has no detection config (sigmoid RetinaNet head): that task simply has no kd column.
    assert demo.select_methods(['detection'], None)['detection']
    assert not demo.select_methods(['classification', 'detection'], ['kd'])['detection']
    with pytest.raises(ValueError,
                       match=r"Unknown method\(s\) \['nosuch'\].*valid: \['ab', 'afd'"):
        demo.select_methods(['classification'], ['nosuch'])
    row = dict(task='t', split='test', metric='m', method='x', teacher=10.0,
               student=[4.0, 6.0], distilled=[7.0, 6.0], seeds=[0, 1])
    line = quality.summarise([row]).splitlines()[-1]
    # gap 10 - 5 = 5, gain 6.5 - 5 = 1.5 -> 0.30 closed; stdev of (4, 6) = 1.41.
    assert line == ('| t | test | m | x | 10.00 | 5.00 ± 1.41 | 6.50 ± 0.71 | +1.50 | +0.30 | '
                    '2 | gain (better on 1/2 seeds) |')
    row.update(distilled=[3.0, 4.0])
    assert quality.summarise([row]).endswith('| **no gain** (better on 0/2 seeds) |')
    # A method with its own student baseline (the ViTs of the inductive-bias tokens) is
    # compared with that baseline, and the table says which.
    spec = demo.TASKS['classification']
    ibt = 'configs/demo/digits/ibt_resnet34-wide+rednet-tiny_civt-tiny_digits.py'
    assert demo.config_baseline(ibt, spec) == 'configs/demo/digits/civt-tiny_digits.py'
    assert demo.config_baseline(chosen['classification'][0][1], spec) == spec['student']
    row.update(task='classification', method='ibt', baseline=demo.config_baseline(ibt, spec))
    assert '| ibt (vs civt-tiny_digits) |' in quality.summarise([row])
    row.update(baseline=spec['student'])
    assert '| ibt |' in quality.summarise([row])
    # LD: a GFL student against its own GFL baseline, and the gap measured to the GFL teacher
    # it reads; a teacher of another task (rtk-det's detector for a segmenter) never is.
    ld = 'configs/demo/shapes_det/ld_gfl_r34-wide_r18-tiny_fpn_shapes.py'
    assert demo.config_baseline(ld, demo.TASKS['detection']) == (
        'configs/demo/shapes_det/gfl_r18-tiny_fpn_shapes.py')
    used = demo.config_teachers(ld)
    assert used == [('model.teacher', ('detection', 'teacher_gfl'))]
    assert demo.reference_teacher('detection', used) == ('detection', 'teacher_gfl')
    rtk_det = demo.config_teachers('configs/demo/shapes_seg/rtk-det_deeplabv3_r18-tiny-d8_shapes.py')
    assert [key for _, key in rtk_det] == [('detection', 'teacher')]
    assert demo.reference_teacher('segmentation', rtk_det) == ('segmentation', 'teacher')
    ens = demo.config_teachers('configs/demo/digits/ens_resnet34-wide+wrn-16-2_resnet18-tiny_digits.py')
    assert demo.reference_teacher('classification', ens) == ('classification', 'teacher')


def test_tune_options_move_every_task_onto_its_tuning_split(shapes_root, tmp_path):
    """``quality.py --tune`` trains without the tuning split and scores on it: never on the
    reported split (digits and IQA test, shapes val)."""
    from mmengine.config import Config, DictAction
    from mmengine.registry import DefaultScope

    from conftest import DET, SEG, shapes_options
    from mmkd.registry import DATASETS
    quality = _benchmark_tool('quality')
    assert set(quality.TUNE_OPTIONS) == set(sys.modules['demo'].TASKS)
    for task, config, scope in (('classification', DIGITS['student'], 'mmpretrain'),
                                ('detection', DET['student'], 'mmdet'),
                                ('segmentation', SEG['student'], 'mmseg')):
        options = quality.TUNE_OPTIONS[task]
        if task != 'classification':
            options = options + shapes_options(shapes_root, det=task == 'detection')
        cfg = Config.fromfile(osp.join(REPO, config))
        parsed = argparse.Namespace()  # parsed as tools/train.py's --cfg-options are
        DictAction(option_strings=['--cfg-options'], dest='options')(None, parsed, options)
        cfg.merge_from_dict(parsed.options)
        with DefaultScope.overwrite_default_scope(scope):
            train = DATASETS.build(cfg.train_dataloader.dataset)
            for loader in ('val_dataloader', 'test_dataloader'):
                val = DATASETS.build(cfg[loader].dataset)
                if task == 'classification':
                    assert val.split == 'tune' and len(val) == 270
                    assert not set(val.split_indices()) & set(train.split_indices())
                    assert len(train) == 1077
                else:
                    paths = [val.get_data_info(i)['img_path'] for i in range(len(val))]
                    assert len(paths) == 4 and all('/tune/' in p for p in paths), paths
        if task == 'detection':
            assert quality.TUNE_OPTIONS[task][-2:] == [
                f'{e}.ann_file=data/shapes/annotations/instances_tune.json'
                for e in ('val_evaluator', 'test_evaluator')]

    # IQA: 3 of the 12 training photos; no photo in both (the configs report on 'test').
    root = str(tmp_path / 'iqa')
    cfg = Config.fromfile(osp.join(REPO, sys.modules['demo'].TASKS['iqa']['student']))
    parsed = argparse.Namespace()
    DictAction(option_strings=['--cfg-options'], dest='options')(None, parsed, [
        *quality.TUNE_OPTIONS['iqa'],
        *[f'{loader}.dataset.data_root={root}' for loader in ('train_dataloader',
                                                              'val_dataloader',
                                                              'test_dataloader')]])
    reported = {s: DATASETS.build(dict(cfg.train_dataloader.dataset, data_root=root, split=s))
                for s in ('train', 'test')}
    # the demo set: 16 crops per photo, 30 images per crop; 12 training photos, 3 test photos
    assert len(reported['train']) == 12 * 16 * 30 and len(reported['test']) == 3 * 16 * 30
    cfg.merge_from_dict(parsed.options)
    assert cfg.train_dataloader.dataset.tune_fraction == 0.25
    train = DATASETS.build(cfg.train_dataloader.dataset)

    def contents(dataset):
        return {dataset.get_data_info(i)['content'] for i in range(len(dataset))}
    for loader in ('val_dataloader', 'test_dataloader'):
        val = DATASETS.build(cfg[loader].dataset)
        assert val.split == 'tune' and len(contents(val)) == 3 and len(contents(train)) == 9
        assert not contents(val) & contents(train)
        assert contents(val) < contents(reported['train'])
        assert not contents(val) & contents(reported['test'])
