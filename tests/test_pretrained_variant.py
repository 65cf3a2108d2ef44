"""The pretrained-backbone variant of the shapes demo (issue 33, part 6).

The shapes classification data the backbones are pretrained on (labels, splits, determinism),
the pretraining configs (their backbones are the dense ones), the checkpoint's backbone keys
loading strictly into the dense students' and teachers' backbones (and through the configs'
``init_cfg``, as a run loads them), the variant's configs (built, discovered by tools/demo.py)
and the grid's plumbing (pretraining first and once, its checkpoint passed to teachers,
baselines and distilled students, a teacher retrained when its backbone changes).
"""
import copy
import importlib.util
import os.path as osp
import sys

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS as ROOT
from mmengine.registry import DefaultScope

import mmkd.datasets.shapes_cls as shapes_cls  # noqa: F401  (registers ShapesClsDataset)
from conftest import REPO, random_teacher_checkpoint
from mmkd.datasets.shapes_cls import ShapesClsDataset, generate_shape_crop

PRETRAIN = osp.join(REPO, 'configs', 'demo', 'shapes_pretrain')
DET_PT = osp.join(REPO, 'configs', 'demo', 'shapes_det_pt')
SEG_PT = osp.join(REPO, 'configs', 'demo', 'shapes_seg_pt')
# (pretraining config, dense plain configs whose backbone it initialises, their scope)
PAIRS = [
    ('r18-tiny_shapes-cls_det.py', [osp.join(DET_PT, 'retinanet_r18-tiny_fpn_shapes_pt.py')],
     'mmdet', 'configs/demo/shapes_det/retinanet_r18-tiny_fpn_shapes.py'),
    ('r34-wide_shapes-cls_det.py', [osp.join(DET_PT, 'retinanet_r34-wide_fpn_shapes_pt.py')],
     'mmdet', 'configs/demo/shapes_det/retinanet_r34-wide_fpn_shapes.py'),
    ('r18-tiny_shapes-cls_seg.py', [osp.join(SEG_PT, 'deeplabv3_r18-tiny-d8_shapes_pt.py')],
     'mmseg', 'configs/demo/shapes_seg/deeplabv3_r18-tiny-d8_shapes.py'),
    ('r34-wide_shapes-cls_seg.py', [osp.join(SEG_PT, 'deeplabv3_r34-wide-d8_shapes_pt.py')],
     'mmseg', 'configs/demo/shapes_seg/deeplabv3_r34-wide-d8_shapes.py'),
]
METHODS = ['diffkd', 'vkd', 'rtk', 'fitnet', 'cwd']


def _demo():
    """tools/demo.py, imported as ``demo`` (as tools/benchmark/quality.py imports it)."""
    if 'demo' not in sys.modules:
        sys.path.insert(0, osp.join(REPO, 'tools'))
        import demo  # noqa: F401
    return sys.modules['demo']


def _quality():
    _demo()
    spec = importlib.util.spec_from_file_location(
        'quality_tool', osp.join(REPO, 'tools', 'benchmark', 'quality.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ----------------------------------------------------------------------------- the data
def test_labels_are_the_drawn_shapes(monkeypatch):
    """Each crop holds one shape of class ``index % 3``. Drawn on a flat black background in
    white (the generator's two colour sources patched), the shape is the pixels above 128;
    its fill of its own bounding box is 1 for an axis-aligned square, pi/4 = 0.785 for a disc
    (up to pixelation) and at most 1/2 for a triangle (area sqrt(3)/4 s^2 in a box of at least
    s x sqrt(3)/2 s)."""
    monkeypatch.setattr(shapes_cls, '_textured_background',
                        lambda rng, size: (np.zeros((size, size, 3), np.float32),
                                           np.zeros(3)))
    monkeypatch.setattr(shapes_cls, '_shape_colour', lambda rng, base: np.full(3, 255.0))
    for index in range(30):
        img, label = generate_shape_crop(1, 'train', index)
        assert img.shape == (32, 32, 3) and img.dtype == np.uint8
        assert label == index % 3
        ys, xs = np.nonzero(img[:, :, 0] > 128)
        assert 10 * 10 * 0.3 <= len(ys)  # at least a 10 px shape
        fill = len(ys) / ((ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1))
        if label == 0:
            assert 0.70 < fill < 0.86, (index, fill)  # circle
        elif label == 1:
            assert fill == 1.0, (index, fill)  # square
        else:
            assert fill < 0.6, (index, fill)  # triangle


def test_dataset_is_deterministic_balanced_and_its_splits_disjoint():
    train = ShapesClsDataset(split='train', num_samples=60)
    again = ShapesClsDataset(split='train', num_samples=60)
    val = ShapesClsDataset(split='val', num_samples=60)
    assert len(train) == 60 and train.metainfo['classes'] == ('circle', 'square', 'triangle')
    infos = [train.get_data_info(i) for i in range(60)]
    assert all(np.array_equal(a['img'], again.get_data_info(i)['img'])
               for i, a in enumerate(infos))
    assert np.bincount([d['gt_label'] for d in infos]).tolist() == [20, 20, 20]
    # independent streams: no crop of one split is a crop of the other (nor repeated)
    digests = [d['img'].tobytes() for d in infos]
    val_digests = [val.get_data_info(i)['img'].tobytes() for i in range(60)]
    assert len(set(digests) | set(val_digests)) == 120
    # another seed, other images; the defaults are the documented ones
    assert not np.array_equal(ShapesClsDataset(split='train', num_samples=1,
                                               seed=2).get_data_info(0)['img'], infos[0]['img'])
    assert len(ShapesClsDataset(split='val', lazy_init=True).data_list) == 0
    assert ShapesClsDataset.DEFAULT_SIZES == {'train': 1500, 'val': 300}
    with pytest.raises(ValueError, match="split must be one of \\['train', 'val'\\]"):
        ShapesClsDataset(split='tune')
    with pytest.raises(ValueError, match='img_size must be an int >= 32'):
        ShapesClsDataset(img_size=16)


def test_generator_streams_are_apart_from_the_dense_data():
    """The dense images come from generators seeded [0, split in 0..2, index]; the crops from
    [seed, 10 + split, index]: for the default seed 1 and the dense seed 0 alike, none of the
    crops' streams is a dense one (the first draws differ)."""
    from mmkd.datasets.shapes import _SPLIT_IDS
    dense = {tuple(np.random.default_rng([0, s, i]).integers(0, 2**31, 4))
             for s in _SPLIT_IDS.values() for i in range(50)}
    for seed in (0, 1):
        for split_id in shapes_cls._CLS_SPLIT_IDS.values():
            for i in range(50):
                first = tuple(np.random.default_rng(
                    [seed, shapes_cls._STREAM_OFFSET + split_id, i]).integers(0, 2**31, 4))
                assert first not in dense


# ------------------------------------------------------- pretraining -> dense backbones
def _build(cfg_model, scope):
    with DefaultScope.overwrite_default_scope(scope):
        return ROOT.build(cfg_model)


@pytest.mark.parametrize('pretrain,dense,scope,scratch', PAIRS, ids=[p[0] for p in PAIRS])
def test_pretrained_backbone_loads_strictly_into_the_dense_backbone(
        pretrain, dense, scope, scratch, tmp_path):
    """The classifier's ``backbone.*`` keys are exactly the dense backbone's (strict load), the
    pretraining backbone is the from-scratch demo's backbone dict (only its scope, its output
    stage, and for mmseg its undilated strides differ), and the variant config's ``init_cfg``
    puts exactly those weights into the dense model when it is initialised."""
    pcfg = Config.fromfile(osp.join(PRETRAIN, pretrain))
    assert pcfg.default_scope == 'mmpretrain'
    torch.manual_seed(0)
    classifier = _build(pcfg.model, 'mmpretrain')
    state = classifier.state_dict()
    ckpt = str(tmp_path / 'pretrained.pth')
    torch.save(dict(state_dict=state, meta=dict(score=1.0)), ckpt)

    ours = dict(pcfg.model.backbone)
    theirs = dict(Config.fromfile(osp.join(REPO, scratch)).model.backbone)
    assert ours.pop('type') == f'{scope}.{theirs.pop("type")}'
    ours.pop('out_indices'), theirs.pop('out_indices')
    ours.pop('init_cfg', None), theirs.pop('init_cfg', None)
    if scope == 'mmseg':  # ImageNet-style undilated pretraining; no weight depends on it
        assert (ours.pop('strides'), ours.pop('dilations')) == ((1, 2, 2, 2), (1, 1, 1, 1))
        assert (theirs.pop('strides'), theirs.pop('dilations')) == ((1, 2, 1, 1), (1, 1, 2, 4))
    assert ours == theirs

    backbone_keys = {k[len('backbone.'):]: v for k, v in state.items()
                     if k.startswith('backbone.')}
    head_keys = set(state) - {f'backbone.{k}' for k in backbone_keys}
    assert head_keys == {'head.fc.weight', 'head.fc.bias'}
    for path in dense:
        cfg = Config.fromfile(path)
        assert cfg.model.backbone.init_cfg == dict(
            type='Pretrained', prefix='backbone.',
            checkpoint=f'work_dirs/demo/shapes_pretrain/{pretrain.split("_")[0]}_{scope[2:]}.pth')
        model_cfg = copy.deepcopy(cfg.model)
        model_cfg.backbone.init_cfg.checkpoint = ckpt  # as tools/demo.py's option does
        model = _build(model_cfg, scope)
        missing = model.backbone.load_state_dict(backbone_keys, strict=True)
        assert not missing.missing_keys and not missing.unexpected_keys
        torch.manual_seed(1)
        model = _build(model_cfg, scope)
        model.init_weights()
        for key, value in model.backbone.state_dict().items():
            assert torch.equal(value, backbone_keys[key]), key


# ---------------------------------------------------------------- the variant's configs
def test_variant_configs_are_discovered_and_start_from_the_pretraining(tmp_path):
    """tools/demo.py finds the five methods in each variant folder (and only those: the
    variant's teacher and student are plain configs); each distiller reads the variant's
    teacher, is compared with the variant's student, and its student starts from the
    student pretraining; the variant is not in the default tasks, and quality.py's tuning
    options cover it."""
    demo = _demo()
    assert demo.DEFAULT_TASKS == ['classification', 'detection', 'segmentation', 'iqa']
    assert set(_quality().TUNE_OPTIONS) == set(demo.TASKS)
    chosen = demo.select_methods(['detection-pt', 'segmentation-pt'], None)
    for task, folder, pt in (('detection-pt', 'shapes_det_pt', 'r18-tiny_det'),
                             ('segmentation-pt', 'shapes_seg_pt', 'r18-tiny_seg')):
        spec = demo.TASKS[task]
        assert sorted(m for m, _ in chosen[task]) == sorted(METHODS)
        assert set(spec['pretrained']) == {'student', 'teacher'}
        for method, config in chosen[task]:
            assert config.startswith(f'configs/demo/{folder}/{method}_')
            assert demo.config_teachers(config) == [('model.teacher', (task, 'teacher'))]
            assert demo.config_baseline(config, spec) == spec['student']
            cfg = demo.load_config(config)  # (loaded once by the discovery above)
            assert cfg.model.student.backbone.init_cfg.checkpoint == \
                f'work_dirs/demo/shapes_pretrain/{pt}.pth'
            assert cfg.model.teacher.checkpoint == f'work_dirs/demo/{folder}/teacher.pth'
            # the method itself is the from-scratch demo's
            base = Config.fromfile(osp.join(REPO, config.replace('_pt/', '/')[:-6] + '.py'))
            assert cfg.model.blocks == base.model.blocks
            assert cfg.custom_imports.imports == ['mmkd']


def test_variant_distiller_builds_with_its_student_pretrained(tmp_path):
    """One variant distiller per task built as the Runner builds it: the student's backbone
    holds the pretrained weights after init_weights, the teacher its own checkpoint's."""
    for config, pretrain, scope in (
            (osp.join(DET_PT, 'fitnet_retinanet_r34-wide_r18-tiny_fpn_shapes_pt.py'),
             'r18-tiny_shapes-cls_det.py', 'mmdet'),
            (osp.join(SEG_PT, 'cwd_deeplabv3_r34-wide_r18-tiny-d8_shapes_pt.py'),
             'r18-tiny_shapes-cls_seg.py', 'mmseg')):
        torch.manual_seed(0)
        classifier = _build(Config.fromfile(osp.join(PRETRAIN, pretrain)).model, 'mmpretrain')
        ckpt = str(tmp_path / 'pretrained.pth')
        torch.save(dict(state_dict=classifier.state_dict()), ckpt)
        cfg = Config.fromfile(config)
        model = copy.deepcopy(cfg.model)
        model.teacher.checkpoint = random_teacher_checkpoint(model.teacher.config,
                                                             str(tmp_path / 'teacher.pth'))
        model.student.backbone.init_cfg.checkpoint = ckpt
        model.dry_run_input_shape = (1, 3, 64, 64)
        distiller = _build(model, scope)
        distiller.init_weights()
        got = distiller.student.backbone.state_dict()
        for key, value in classifier.backbone.state_dict().items():
            assert torch.equal(got[key], value), key
        teacher = torch.load(model.teacher.checkpoint, weights_only=False)['state_dict']
        t_model = distiller._teachers['teacher'].model
        assert torch.equal(t_model.state_dict()['backbone.layer1.0.conv1.weight'],
                           teacher['backbone.layer1.0.conv1.weight'])


# ------------------------------------------------------------------------ the plumbing
def test_grid_pretrains_once_and_passes_the_backbones_on(tmp_path, monkeypatch):
    """run_grid with tools/demo.py's train() replaced by a recorder: the two pretrainings run
    first and once (with ``options['pretrain']`` only), the teacher starts from the teacher
    pretraining, the baseline and the distilled students from the student's (the distilled
    ones through the distiller's key); a second grid reuses everything, and a teacher whose
    pretrained backbone changed is trained again."""
    demo = _demo()
    calls = []

    def fake_train(config, work_dir, metric, options=(), scale=1.0, threads=None):
        calls.append((config, list(options)))
        ckpt = tmp_path / f'ckpt_{len(calls)}.pth'
        torch.save(dict(state_dict=dict(w=torch.full((1, ), float(len(calls))))), ckpt)
        work = osp.join(REPO, work_dir)
        import os
        os.makedirs(work, exist_ok=True)
        with open(osp.join(work, 'last_checkpoint'), 'w') as f:
            f.write(str(ckpt))
        return 10.0 + len(calls)
    monkeypatch.setattr(demo, 'train', fake_train)
    root = str(tmp_path / 'runs')
    troot = str(tmp_path / 'teachers')
    options = {'detection-pt': ['task.opt=1'], 'pretrain': ['pre.opt=2']}

    def grid():
        calls.clear()
        return demo.run_grid(['detection-pt'], ['fitnet'], [0], root, troot, options, jobs=1,
                             threads=2)
    rows = grid()
    configs = [c for c, _ in calls]
    assert configs == [
        'configs/demo/shapes_pretrain/r18-tiny_shapes-cls_det.py',
        'configs/demo/shapes_pretrain/r34-wide_shapes-cls_det.py',
        'configs/demo/shapes_det_pt/retinanet_r34-wide_fpn_shapes_pt.py',
        'configs/demo/shapes_det_pt/retinanet_r18-tiny_fpn_shapes_pt.py',
        'configs/demo/shapes_det_pt/fitnet_retinanet_r34-wide_r18-tiny_fpn_shapes_pt.py']
    pre = osp.join(troot, 'shapes_pretrain')
    student_pt, teacher_pt = osp.join(pre, 'r18-tiny_det.pth'), osp.join(pre, 'r34-wide_det.pth')
    assert calls[0][1] == calls[1][1] == ['randomness.seed=0', 'pre.opt=2']
    assert calls[2][1] == ['randomness.seed=0', 'task.opt=1',
                           f'model.backbone.init_cfg.checkpoint={teacher_pt}']
    assert calls[3][1] == ['randomness.seed=0', 'task.opt=1',
                           f'model.backbone.init_cfg.checkpoint={student_pt}']
    teacher_ckpt = osp.join(troot, 'shapes_det_pt', 'teacher.pth')
    assert calls[4][1] == ['randomness.seed=0', f'model.teacher.checkpoint={teacher_ckpt}',
                           f'model.student.backbone.init_cfg.checkpoint={student_pt}',
                           'task.opt=1']
    assert rows[0]['pretrained'] == dict(student=11.0, teacher=12.0)
    assert rows[0]['teacher'] == 13.0 and rows[0]['student'] == [14.0]
    # everything kept is reused: only the student runs again
    grid()
    assert [c for c, _ in calls] == configs[3:]
    # a new teacher pretraining (same path, other weights): the teacher is trained again
    torch.save(dict(state_dict=dict(w=torch.zeros(1)), meta=dict(
        score=1.0, fingerprint=demo.teacher_fingerprint(
            demo.TASKS['detection-pt']['pretrained']['teacher'][1],
            ['randomness.seed=0', 'pre.opt=2']))), teacher_pt)
    grid()
    assert [c for c, _ in calls] == configs[2:]


@pytest.mark.slow
def test_variant_grid_runs_end_to_end(tmp_path, shapes_root):
    """quality.py on the variant, a few iterations of every run (pretrainings included);
    covered fast by the plumbing and loading tests above."""
    from conftest import run_tool, shapes_options
    out = tmp_path / 'out'
    run_tool(['tools/benchmark/quality.py', '--tasks', 'segmentation-pt', '--methods', 'cwd',
              '--seeds', '0', '--jobs', '1', '--work-dir', str(tmp_path / 'runs'),
              '--teacher-work-dir', str(tmp_path / 'teachers'), '--out', str(out),
              '--cfg-options', 'train_cfg.max_iters=2', 'train_cfg.val_interval=2',
              *shapes_options(shapes_root, det=False)], timeout=600)
    import json
    rows = json.loads((out / 'quality.json').read_text())['rows']
    assert [(r['task'], r['method']) for r in rows] == [('segmentation-pt', 'cwd')]
    assert set(rows[0]['pretrained']) == {'student', 'teacher'}
    for name in ('r18-tiny_seg', 'r34-wide_seg'):
        assert (tmp_path / 'teachers' / 'shapes_pretrain' / f'{name}.pth').is_file()
    assert (tmp_path / 'teachers' / 'shapes_seg_pt' / 'teacher.pth').is_file()
