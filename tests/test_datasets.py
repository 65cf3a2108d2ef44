"""Tests of mmkd.datasets: real digits (mmpretrain), synthetic shapes (mmdet / mmseg).

CPU only, no network; the shapes data is written under pytest's tmp dirs.
"""
import json
import os
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import DefaultScope

# Import the subpackage directly: mmkd/__init__.py need not import it.
from mmkd.datasets import (DigitsDataset, ShapesDetDataset, ShapesSegDataset,
                           make_shapes_dataset, stratified_split)
from mmkd.datasets.digits import _load_raw_digits
from mmkd.datasets.shapes import SHAPE_CLASSES

SMALL = dict(num_train=12, num_val=6, num_tune=4, img_size=64, seed=0)


# --------------------------------------------------------------------------- digits


def test_digits_split_sizes_disjoint_and_stratified():
    train = DigitsDataset(split='train')
    test = DigitsDataset(split='test')
    assert len(train) == 1347 and len(test) == 450
    train_src = {train.get_data_info(i)['source_idx'] for i in range(len(train))}
    test_src = {test.get_data_info(i)['source_idx'] for i in range(len(test))}
    assert not train_src & test_src
    assert train_src | test_src == set(range(1797))
    assert set(train.get_gt_labels().tolist()) == set(range(10))
    assert set(test.get_gt_labels().tolist()) == set(range(10))
    # Stratified: every class keeps about a quarter of its samples in the test split.
    counts = np.bincount(test.get_gt_labels(), minlength=10)
    totals = counts + np.bincount(train.get_gt_labels(), minlength=10)
    assert np.all(np.abs(counts - totals * 450 / 1797) < 1)
    assert train.metainfo['classes'] == tuple(str(i) for i in range(10))


def test_digits_deterministic_and_seeded():
    a, b = DigitsDataset(split='test'), DigitsDataset(split='test')
    assert [a.get_data_info(i)['source_idx'] for i in range(len(a))] == \
        [b.get_data_info(i)['source_idx'] for i in range(len(b))]
    info_a, info_b = a.get_data_info(7), b.get_data_info(7)
    assert np.array_equal(info_a['img'], info_b['img'])
    assert info_a['gt_label'] == info_b['gt_label']
    other = DigitsDataset(split='test', split_seed=1)
    assert len(other) == 450
    assert a.split_indices().tolist() != other.split_indices().tolist()


def test_digits_tune_split_carved_from_train_only():
    test = DigitsDataset(split='test').split_indices()
    full_train = DigitsDataset(split='train').split_indices()
    train = DigitsDataset(split='train', tune_fraction=0.2).split_indices()
    tune = DigitsDataset(split='tune', tune_fraction=0.2).split_indices()
    assert (len(train), len(tune)) == (1077, 270)  # ceil(0.2 * 1347) = 270
    assert np.array_equal(DigitsDataset(split='test', tune_fraction=0.2).split_indices(), test)
    assert not set(tune) & set(train) and not set(tune) & set(test)
    assert np.array_equal(np.sort(np.concatenate([train, tune])), full_train)
    _, labels = _load_raw_digits()
    assert set(np.bincount(labels[tune], minlength=10)) <= {26, 27, 28}  # stratified
    with pytest.raises(ValueError, match='tune_fraction > 0'):
        DigitsDataset(split='tune')
    with pytest.raises(ValueError, match=r"\['train', 'tune', 'test'\]"):
        DigitsDataset(split='val')


def test_digits_distortion_is_fixed_per_image_and_max_train_is_exact():
    d = dict(rotate=25, scale=0.15, shear=15, translate=0.1, elastic_alpha=2.0, noise_std=30)
    clean = DigitsDataset(split='test', img_size=16)
    hard = DigitsDataset(split='test', img_size=16, distortion=d)
    again = DigitsDataset(split='test', img_size=16, distortion=d)
    other_seed = DigitsDataset(split='test', img_size=16, distortion=dict(d, seed=1))
    x, y = hard.get_data_info(3)['img'], again.get_data_info(3)['img']
    assert np.array_equal(x, y)  # the same image every time it is built
    assert not np.array_equal(x, clean.get_data_info(3)['img'])
    assert not np.array_equal(x, other_seed.get_data_info(3)['img'])
    assert x.shape == (16, 16, 3) and x.dtype == np.uint8
    assert np.array_equal(x[..., 0], x[..., 2])
    # An image's distortion depends on its index in the 1,797 only, not on the split it is in.
    tune = DigitsDataset(split='tune', tune_fraction=0.2, img_size=16, distortion=d)
    train = DigitsDataset(split='train', img_size=16, distortion=d)
    info = tune.get_data_info(0)
    pos = int(np.flatnonzero(train.split_indices() == info['source_idx'])[0])
    assert np.array_equal(info['img'], train.get_data_info(pos)['img'])
    # Identity parameters leave the image as it was.
    ident = DigitsDataset(split='test', img_size=16, distortion=dict(rotate=0.0))
    assert np.array_equal(ident.get_data_info(3)['img'], clean.get_data_info(3)['img'])
    for m in (10, 333, 1000):
        idx = DigitsDataset(split='train', max_train=m).split_indices()
        assert len(idx) == m and set(idx) <= set(DigitsDataset(split='train').split_indices())
    _, labels = _load_raw_digits()
    counts = np.bincount(labels[DigitsDataset(split='train', max_train=333).split_indices()])
    assert counts.min() >= 32 and counts.max() <= 35  # stratified
    with pytest.raises(ValueError, match='noise_sd.*valid keys'):
        DigitsDataset(split='test', distortion=dict(noise_sd=3))
    with pytest.raises(ValueError, match='max_train'):
        DigitsDataset(split='train', max_train=5)


def test_stratified_split_exact_total():
    labels = np.repeat(np.arange(3), [10, 7, 5])
    train_idx, test_idx = stratified_split(labels, test_fraction=0.3, seed=3)
    assert len(test_idx) == int(np.ceil(0.3 * 22)) and len(train_idx) == 22 - len(test_idx)
    assert sorted(train_idx.tolist() + test_idx.tolist()) == list(range(22))


def test_digits_image_format():
    ds = DigitsDataset(split='test', img_size=32)
    info = ds.get_data_info(0)
    img = info['img']
    assert img.shape == (32, 32, 3) and img.dtype == np.uint8
    assert np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 0], img[..., 2])
    assert img.max() > 200 and img.min() == 0  # scaled from 0..16 to 0..255
    assert isinstance(info['gt_label'], int)
    assert DigitsDataset(split='test', img_size=16).get_data_info(0)['img'].shape == (16, 16, 3)
    with pytest.raises(ValueError):
        DigitsDataset(split='val')


def test_digits_mmpretrain_pipeline_and_accuracy():
    from mmpretrain.evaluation import Accuracy
    from mmpretrain.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    pipeline = [
        dict(type='RandomFlip', prob=0.5, direction='horizontal'),
        dict(type='PackInputs'),
    ]
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        ds = MMENGINE_DATASETS.build(
            dict(type='mmkd.DigitsDataset', split='test', pipeline=pipeline))
        assert isinstance(ds, DigitsDataset)
        sample = ds[3]
    assert sample['inputs'].shape == (3, 32, 32)
    assert sample['inputs'].dtype == torch.uint8
    data_sample = sample['data_samples']
    assert data_sample.gt_label.tolist() == [ds.get_data_info(3)['gt_label']]

    metric = Accuracy(topk=(1, ))
    metric.dataset_meta = ds.metainfo
    metric.process(None, [data_sample.set_pred_label(data_sample.gt_label).to_dict()])
    assert metric.evaluate(1)['accuracy/top1'] == pytest.approx(100.0)


# --------------------------------------------------------------------------- shapes


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    return make_shapes_dataset(str(tmp_path_factory.mktemp('shapes') / 'shapes'), **SMALL)


def _read(path, flag=None):
    import cv2
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED if flag is None else flag)
    assert img is not None, path
    return img


def test_make_shapes_layout_and_counts(shapes):
    assert shapes['generated'] is True
    assert shapes['num_train'] == 12 and shapes['num_val'] == 6
    for split, num in (('train', 12), ('val', 6), ('tune', 4)):
        imgs = sorted(os.listdir(shapes[f'{split}_img_dir']))
        segs = sorted(os.listdir(shapes[f'{split}_seg_dir']))
        assert imgs == segs == [f'{i:06d}.png' for i in range(num)]
        with open(shapes[f'{split}_ann_file']) as f:
            coco = json.load(f)
        assert len(coco['images']) == num
        assert len(coco['annotations']) == shapes[f'num_{split}_instances']
        assert [c['name'] for c in coco['categories']] == list(SHAPE_CLASSES)
        assert [c['id'] for c in coco['categories']] == [1, 2, 3]
        per_image = np.bincount([a['image_id'] for a in coco['annotations']], minlength=num + 1)
        assert per_image[1:].min() >= 1 and per_image.max() <= 4
        for ann in coco['annotations']:
            assert ann['iscrowd'] == 0 and ann['area'] > 0
            assert len(ann['segmentation'][0]) >= 6
        img = _read(osp.join(shapes[f'{split}_img_dir'], imgs[0]))
        seg = _read(osp.join(shapes[f'{split}_seg_dir'], segs[0]))
        assert img.shape == (64, 64, 3) and img.dtype == np.uint8
        assert seg.shape == (64, 64) and seg.dtype == np.uint8
        assert set(np.unique(seg).tolist()) <= {0, 1, 2, 3}
        assert img.std() > 5  # textured, not flat
    # No leftover temporary folders next to the dataset.
    assert os.listdir(osp.dirname(shapes['root'])) == [osp.basename(shapes['root'])]


def test_shapes_boxes_tightly_contain_label_pixels(shapes):
    with open(shapes['val_ann_file']) as f:
        coco = json.load(f)
    by_image = {}
    for ann in coco['annotations']:
        by_image.setdefault(ann['image_id'], []).append(ann)
    for image in coco['images']:
        seg = _read(osp.join(shapes['val_seg_dir'], image['file_name']))
        covered = np.zeros(seg.shape, dtype=bool)
        for ann in by_image[image['id']]:
            x, y, w, h = ann['bbox']
            crop = seg[y:y + h, x:x + w] == ann['category_id']
            ys, xs = np.nonzero(crop)
            # Tight: the shape's pixels touch all four box edges.
            assert (xs.min(), xs.max(), ys.min(), ys.max()) == (0, w - 1, 0, h - 1)
            assert crop.sum() == ann['area']
            covered[y:y + h, x:x + w] = True
        # Every shape pixel lies in some box, i.e. the boxes cover the whole foreground.
        assert not np.any((seg > 0) & ~covered)


def test_make_shapes_deterministic(shapes, tmp_path):
    again = make_shapes_dataset(str(tmp_path / 'again'), **SMALL)
    for split in ('train', 'val', 'tune'):
        for name in sorted(os.listdir(shapes[f'{split}_seg_dir'])):
            for key in (f'{split}_seg_dir', f'{split}_img_dir'):
                with open(osp.join(shapes[key], name), 'rb') as f1, \
                        open(osp.join(again[key], name), 'rb') as f2:
                    assert f1.read() == f2.read()
        with open(shapes[f'{split}_ann_file']) as f1, open(again[f'{split}_ann_file']) as f2:
            assert json.load(f1) == json.load(f2)
    # The tuning split is its own draw (no image shared with val), and adding or resizing it
    # leaves the train and val images as they were.
    for name in sorted(os.listdir(shapes['tune_img_dir'])):
        with open(osp.join(shapes['tune_img_dir'], name), 'rb') as f1, \
                open(osp.join(shapes['val_img_dir'], name), 'rb') as f2:
            assert f1.read() != f2.read()
    no_tune = make_shapes_dataset(str(tmp_path / 'no_tune'), **dict(SMALL, num_tune=0))
    for split in ('train', 'val'):
        with open(shapes[f'{split}_ann_file']) as f1, open(no_tune[f'{split}_ann_file']) as f2:
            assert json.load(f1) == json.load(f2)
    other = make_shapes_dataset(str(tmp_path / 'other'), **dict(SMALL, seed=1))
    with open(shapes['val_ann_file']) as f1, open(other['val_ann_file']) as f2:
        assert json.load(f1)['annotations'] != json.load(f2)['annotations']


def test_make_shapes_idempotent_and_overwrite(tmp_path):
    root = str(tmp_path / 'shapes')
    first = make_shapes_dataset(root, num_train=3, num_val=2, num_tune=1)
    seg = osp.join(first['train_seg_dir'], '000000.png')
    mtime = os.stat(seg).st_mtime_ns
    second = make_shapes_dataset(root, num_train=3, num_val=2, num_tune=1)
    assert first['generated'] and not second['generated']
    assert os.stat(seg).st_mtime_ns == mtime
    assert second['num_train_instances'] == first['num_train_instances']
    # Forced, or with other parameters: regenerated in place.
    assert make_shapes_dataset(root, num_train=3, num_val=2, num_tune=1, overwrite=True)['generated']
    changed = make_shapes_dataset(root, num_train=4, num_val=2, num_tune=1)
    assert changed['generated'] and len(os.listdir(changed['train_img_dir'])) == 4
    assert os.listdir(tmp_path) == ['shapes']
    # A foreign non-empty folder is never replaced silently.
    foreign = tmp_path / 'foreign'
    foreign.mkdir()
    (foreign / 'keep.txt').write_text('x')
    with pytest.raises(FileExistsError):
        make_shapes_dataset(str(foreign), num_train=1, num_val=1, num_tune=1)
    assert (foreign / 'keep.txt').exists()


def test_make_shapes_cli(tmp_path, capsys):
    import importlib.util
    path = osp.join(osp.dirname(__file__), '..', 'tools', 'dataset_converters', 'make_shapes.py')
    spec = importlib.util.spec_from_file_location('make_shapes_cli', path)
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    out = str(tmp_path / 'cli')
    cli.main(['--out', out, '--num-train', '2', '--num-val', '1', '--img-size', '32'])
    assert 'wrote' in capsys.readouterr().out
    assert len(os.listdir(osp.join(out, 'images', 'train'))) == 2
    cli.main(['--out', out, '--num-train', '2', '--num-val', '1', '--img-size', '32'])
    assert 'reused' in capsys.readouterr().out


def test_shapes_det_dataset_mmdet_pipeline_and_coco_metric(shapes):
    from mmdet.evaluation import CocoMetric
    from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', with_bbox=True),
        dict(type='Resize', scale=(96, 96), keep_ratio=True),
        dict(type='PackDetInputs'),
    ]
    cfg = dict(
        type='mmkd.ShapesDetDataset',
        data_root=shapes['root'],
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='images/val/'),
        pipeline=pipeline)
    with DefaultScope.overwrite_default_scope('mmdet'):
        ds = MMENGINE_DATASETS.build(cfg)
        assert isinstance(ds, ShapesDetDataset)
        assert len(ds) == 6
        sample = ds[0]
    assert ds.metainfo['classes'] == SHAPE_CLASSES
    assert sample['inputs'].shape == (3, 96, 96)
    gt = sample['data_samples'].gt_instances
    info = ds.get_data_info(0)
    assert len(gt) == len(info['instances']) >= 1
    expected = torch.tensor([inst['bbox'] for inst in info['instances']]) * 1.5
    assert torch.allclose(gt.bboxes.tensor, expected)
    assert set(gt.labels.tolist()) <= {0, 1, 2}

    # Ground truth as predictions: CocoMetric on the val json must report mAP 1.
    metric = CocoMetric(ann_file=shapes['val_ann_file'], metric='bbox')
    metric.dataset_meta = ds.metainfo
    for i in range(len(ds)):
        info = ds.get_data_info(i)
        boxes = torch.tensor([inst['bbox'] for inst in info['instances']], dtype=torch.float32)
        labels = torch.tensor([inst['bbox_label'] for inst in info['instances']])
        metric.process({}, [
            dict(img_id=info['img_id'], ori_shape=(info['height'], info['width']),
                 pred_instances=dict(bboxes=boxes, scores=torch.ones(len(boxes)), labels=labels))
        ])
    assert metric.evaluate(len(ds))['coco/bbox_mAP'] == pytest.approx(1.0)


def test_shapes_seg_dataset_mmseg_pipeline_and_iou_metric(shapes):
    from mmseg.evaluation import IoUMetric
    from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations'),
        dict(type='PackSegInputs'),
    ]
    cfg = dict(
        type='mmkd.ShapesSegDataset',
        data_root=shapes['root'],
        data_prefix=dict(img_path='images/val', seg_map_path='seg_maps/val'),
        pipeline=pipeline)
    with DefaultScope.overwrite_default_scope('mmseg'):
        ds = MMENGINE_DATASETS.build(cfg)
        assert isinstance(ds, ShapesSegDataset)
        assert len(ds) == 6
        samples = [ds[i] for i in range(len(ds))]
    assert ds.metainfo['classes'] == ('background', ) + SHAPE_CLASSES
    gt = samples[0]['data_samples'].gt_sem_seg.data
    assert samples[0]['inputs'].shape == (3, 64, 64)
    assert gt.shape == (1, 64, 64)
    values = set(torch.cat([s['data_samples'].gt_sem_seg.data.unique() for s in samples]).tolist())
    assert 0 in values and values <= {0, 1, 2, 3} and len(values) >= 2

    metric = IoUMetric(iou_metrics=['mIoU'])
    metric.dataset_meta = ds.metainfo
    for s in samples:
        d = s['data_samples'].to_dict()
        d['pred_sem_seg'] = d['gt_sem_seg']
        metric.process({}, [d])
    assert metric.evaluate(len(samples))['mIoU'] == pytest.approx(100.0)
