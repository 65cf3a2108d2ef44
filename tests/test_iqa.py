"""IQA: the metric against the formulas, the regression head, the dataset readers on fixtures
in each published layout, the split by content, and the scikit-image demo set."""
import csv
import json
import os
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from mmpretrain.structures import DataSample

from mmkd.datasets import (KADID10kDataset, KonIQ10kDataset, LIVEChallengeDataset, LIVEDataset,
                           SyntheticIQADataset, make_synthetic_iqa, split_by_content)
from mmkd.datasets.synthetic_iqa import DISTORTIONS, PHOTOS, ssim
from mmkd.evaluation import IQAMetric, srcc_plcc
from mmkd.models import QualityRegressionHead


# ----------------------------------------------------------------------------- metric
def _ranks(x):
    """Average ranks (ties share the mean of their positions), 1-based."""
    x = np.asarray(x, float)
    order = np.argsort(x, kind='stable')
    ranks = np.empty(len(x))
    ranks[order] = np.arange(1, len(x) + 1)
    for v in np.unique(x):
        ranks[x == v] = ranks[x == v].mean()
    return ranks


def _pearson(a, b):
    a, b = np.asarray(a, float) - np.mean(a), np.asarray(b, float) - np.mean(b)
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def test_srcc_plcc_match_the_formulas_on_known_inputs():
    pred = [0.1, 0.4, 0.35, 0.8, 0.8, 0.95]
    gt = [1.0, 2.0, 3.0, 3.5, 4.0, 4.5]
    out = srcc_plcc(pred, gt)
    assert out['plcc'] == pytest.approx(_pearson(pred, gt), abs=1e-12)
    assert out['srcc'] == pytest.approx(_pearson(_ranks(pred), _ranks(gt)), abs=1e-12)
    # a monotonic non-linear map: rank correlation 1, linear correlation below 1
    x = np.linspace(0, 1, 20)
    mono = srcc_plcc(x, np.exp(6 * x))
    assert mono['srcc'] == pytest.approx(1.0) and mono['plcc'] < 0.95
    assert srcc_plcc(x, -x)['srcc'] == pytest.approx(-1.0)
    # logistic PLCC: a logistic relation is linear after the fit
    s_curve = 1 / (1 + np.exp(-12 * (x - 0.4)))
    fitted = srcc_plcc(x, s_curve, logistic=True)
    assert fitted['plcc'] < 0.97 and fitted['plcc_logistic'] == pytest.approx(1.0, abs=1e-6)
    # no correlation is nan, never a number
    for p, g in (([0.5], [1.0]), ([1, 1, 1], [1, 2, 3]), ([1, float('nan')], [1, 2])):
        assert np.isnan(srcc_plcc(p, g)['srcc'])


def test_iqa_metric_reads_pred_and_gt_scores_of_the_data_samples():
    rng = np.random.default_rng(0)
    gt = rng.random(30)
    pred = gt + 0.1 * rng.standard_normal(30)
    metric = IQAMetric()
    samples = []
    for p, g in zip(pred, gt):
        sample = DataSample().set_gt_score([g])
        sample.set_field(torch.tensor([p]), 'pred_score')
        samples.append(sample.to_dict())  # MMEngine's Evaluator hands the metric dicts
    metric.process(None, samples[:17])
    metric.process(None, samples[17:])
    out = metric.compute_metrics(metric.results)
    assert out == pytest.approx(srcc_plcc(pred, gt))
    with pytest.raises(ValueError, match='one quality score per image'):
        IQAMetric().process(None, [dict(gt_score=torch.ones(1), pred_score=torch.ones(2))])


# ----------------------------------------------------------------------------- head
def test_quality_head_loss_predict_and_tokens():
    torch.manual_seed(0)
    head = QualityRegressionHead(in_channels=8)
    head.init_weights()
    feats = (torch.randn(4, 8), )
    samples = [DataSample().set_gt_score([v]) for v in (0.1, 0.5, 0.7, 0.9)]
    pred = head(feats)
    assert pred.shape == (4, 1)
    target = torch.tensor([[0.1], [0.5], [0.7], [0.9]])
    assert head.loss(feats, samples)['loss'].item() == pytest.approx(
        (pred - target).abs().mean().item(), rel=1e-6)
    mse = QualityRegressionHead(8, loss='mse')
    mse.load_state_dict(head.state_dict())
    assert mse.loss(feats, samples)['loss'].item() == pytest.approx(
        ((pred - target) ** 2).mean().item(), rel=1e-6)
    out = head.predict(feats, samples)
    assert torch.allclose(torch.stack([s.pred_score for s in out]), pred.detach())

    # tokens: every head runs, losses on loss_weights, predict = weighted mean
    multi = QualityRegressionHead(8, tokens=('cls', 'conv', 'inv'), loss_weights=dict(cls=1.0),
                                  predict_weights=dict(cls=1.0, conv=1.0, inv=2.0))
    tokens = (torch.randn(4, 3, 8), )
    per = multi.forward_tokens(tokens)
    assert set(per) == {'cls', 'conv', 'inv'}
    assert torch.allclose(multi(tokens), (per['cls'] + per['conv'] + 2 * per['inv']) / 4)
    assert set(multi.loss(tokens, samples)) == {'loss_cls'}
    with pytest.raises(ValueError, match='expects'):
        multi((torch.randn(4, 8), ))
    with pytest.raises(ValueError, match='not tokens'):
        QualityRegressionHead(8, tokens=('cls', ), loss_weights=dict(conv=1.0))
    with pytest.raises(ValueError, match='loss'):
        QualityRegressionHead(8, loss='huber')
    with pytest.raises(KeyError, match='gt_score'):
        head.loss(feats, [DataSample() for _ in range(4)])


# ----------------------------------------------------------------------------- splits
def test_split_by_content_is_disjoint_deterministic_and_moves_with_the_seed():
    contents = [f'ref{i:02d}' for i in range(29)] * 3
    splits = [split_by_content(contents, 0.2, seed) for seed in range(10)]
    for s in splits:
        assert len(s['test']) == 6 and len(s['train']) == 23 and not s['tune']
        assert set(s['train']).isdisjoint(s['test'])
        assert sorted(s['train'] + s['test']) == sorted(set(contents))
    assert splits[0] == split_by_content(contents, 0.2, 0)
    assert len({tuple(s['test']) for s in splits}) == 10
    tuned = split_by_content(contents, 0.2, 0, tune_fraction=0.2)
    assert tuned['test'] == splits[0]['test']  # the test split never moves
    assert len(tuned['tune']) == 5 and set(tuned['tune']) <= set(splits[0]['train'])
    with pytest.raises(ValueError):
        split_by_content(['a'], 0.2, 0)


# ----------------------------------------------------------------------------- readers
def _image(path, value=128):
    os.makedirs(osp.dirname(path), exist_ok=True)
    cv2.imwrite(path, np.full((8, 8, 3), value, np.uint8))


def _cell(names):
    cell = np.empty((1, len(names)), dtype=object)
    for i, n in enumerate(names):
        cell[0, i] = n
    return cell


def make_live_fixture(root):
    """LIVE release 2: 982 entries (5 folders), 29 references, orgs marks the references'
    own copies; DMOS 0-100."""
    from scipy.io import savemat
    rng = np.random.default_rng(1)
    refs = [f'ref{i:02d}.bmp' for i in range(29)]
    for r in refs:
        _image(osp.join(root, 'refimgs', r))
    names, orgs, dmos = [], [], []
    for folder, count in LIVEDataset.DISTORTIONS:
        for k in range(1, count + 1):
            _image(osp.join(root, folder, f'img{k}.bmp'))
            names.append(refs[rng.integers(29)])
            orgs.append(1 if k <= 5 else 0)
            dmos.append(0.0 if k <= 5 else float(rng.uniform(10, 90)))
    savemat(osp.join(root, 'dmos.mat'), dict(dmos=np.array([dmos]), orgs=np.array([orgs])))
    savemat(osp.join(root, 'refnames_all.mat'), dict(refnames_all=_cell(names)))
    return names, orgs, dmos


def test_live_reader_excludes_reference_copies_splits_by_reference_and_flips_dmos(tmp_path):
    names, orgs, dmos = make_live_fixture(str(tmp_path))
    train = LIVEDataset(str(tmp_path), split='train', split_seed=3)
    test = LIVEDataset(str(tmp_path), split='test', split_seed=3)
    assert len(train) + len(test) == 982 - 25  # the 25 reference copies are not images to rate
    contents = lambda ds: {ds.get_data_info(i)['content'] for i in range(len(ds))}  # noqa
    assert contents(train).isdisjoint(contents(test))
    info = train.get_data_info(0)
    assert info['ref_path'].endswith(info['content']) and info['distortion'] == 'jp2k'
    assert info['gt_score'][0] == pytest.approx(1 - info['raw_score'] / 100)  # DMOS flipped
    i = next(i for i, o in enumerate(orgs) if not o and names[i] == info['content'])
    assert info['raw_score'] == pytest.approx(dmos[i])


def test_live_challenge_reader_skips_the_seven_training_images(tmp_path):
    from scipy.io import savemat
    names = [f't{i}.bmp' for i in range(7)] + [f'{i:04d}.JPG' for i in range(40)]
    mos = np.arange(len(names), dtype=float) * 2
    for n in names:
        _image(osp.join(str(tmp_path), 'Images', n))
    os.makedirs(tmp_path / 'Data')
    savemat(str(tmp_path / 'Data' / 'AllImages_release.mat'),
            dict(AllImages_release=_cell(names).T))
    savemat(str(tmp_path / 'Data' / 'AllMOS_release.mat'), dict(AllMOS_release=mos[None]))
    parts = [LIVEChallengeDataset(str(tmp_path), split=s) for s in ('train', 'test')]
    assert [len(p) for p in parts] == [32, 8]
    seen = sorted(osp.basename(p.get_data_info(i)['img_path'])
                  for p in parts for i in range(len(p)))
    assert seen == sorted(names[7:])
    info = parts[0].get_data_info(0)
    k = names.index(osp.basename(info['img_path']))
    assert info['gt_score'][0] == pytest.approx(mos[k] / 100) and 'ref_path' not in info


def test_koniq_and_kadid_readers(tmp_path):
    koniq = tmp_path / 'koniq'
    rows = [dict(image_name=f'{i}.jpg', MOS=f'{1 + 4 * i / 19:.3f}', MOS_zscore=f'{5 * i:.1f}')
            for i in range(20)]
    for r in rows:
        _image(str(koniq / '1024x768' / r['image_name']))
    with open(koniq / 'koniq10k_scores_and_distributions.csv', 'w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=['image_name', 'MOS', 'MOS_zscore'])
        w.writeheader()
        w.writerows(rows)
    ds = KonIQ10kDataset(str(koniq), split='test')
    assert len(ds) == 4
    info = ds.get_data_info(0)
    assert info['gt_score'][0] == pytest.approx((info['raw_score'] - 1) / 4)
    z = KonIQ10kDataset(str(koniq), split='test', score_key='MOS_zscore', score_range=(0, 100))
    assert z.get_data_info(0)['gt_score'][0] == pytest.approx(z.get_data_info(0)['raw_score']
                                                              / 100)
    with pytest.raises(KeyError, match='MOS_std'):
        KonIQ10kDataset(str(koniq), score_key='MOS_std')

    kadid = tmp_path / 'kadid'
    rows = []
    for ref in range(1, 11):
        _image(str(kadid / 'images' / f'I{ref:02d}.png'))
        for dist in (1, 2):
            for level in range(1, 6):
                name = f'I{ref:02d}_{dist:02d}_{level:02d}.png'
                _image(str(kadid / 'images' / name))
                rows.append(dict(dist_img=name, ref_img=f'I{ref:02d}.png',
                                 dmos=f'{5 - 0.8 * level:.2f}', var='0.1'))
    with open(kadid / 'dmos.csv', 'w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=['dist_img', 'ref_img', 'dmos', 'var'])
        w.writeheader()
        w.writerows(rows)
    train, test = (KADID10kDataset(str(kadid), split=s) for s in ('train', 'test'))
    assert (len(train), len(test)) == (80, 20)
    refs = lambda ds: {ds.get_data_info(i)['content'] for i in range(len(ds))}  # noqa
    assert refs(train).isdisjoint(refs(test)) and len(refs(test)) == 2
    info = test.get_data_info(0)
    assert info['distortion'] == '01' and osp.basename(info['ref_path']) == info['content']
    assert info['gt_score'][0] == pytest.approx((info['raw_score'] - 1) / 4)

    os.remove(kadid / 'images' / rows[3]['dist_img'])
    with pytest.raises(FileNotFoundError, match='1 of 100 images'):
        KADID10kDataset(str(kadid))
    with pytest.raises(FileNotFoundError, match='dmos.csv'):
        KADID10kDataset(str(tmp_path / 'nowhere'))
    with pytest.raises(ValueError, match='split'):
        KADID10kDataset(str(kadid), split='val')


# ----------------------------------------------------------------------------- demo set
def test_synthetic_iqa_set_is_deterministic_idempotent_and_honestly_labelled(tmp_path):
    first = make_synthetic_iqa(str(tmp_path / 'a'), crop_size=32)
    assert first['generated'] and first['num_images'] == len(PHOTOS) * 4 * 6 * 5
    # the 2 x 2 default keeps the parameters, so the folders, of the sets made before G existed
    assert 'crops_per_side' not in json.load(open(osp.join(first['root'], 'meta.json')))['params']
    stamp = os.stat(first['csv']).st_mtime_ns
    again = make_synthetic_iqa(str(tmp_path / 'a'), crop_size=32)
    assert not again['generated'] and os.stat(first['csv']).st_mtime_ns == stamp
    other = make_synthetic_iqa(str(tmp_path / 'b'), crop_size=32)
    assert open(first['csv']).read() == open(other['csv']).read()

    rows = list(csv.DictReader(open(first['csv'])))
    images = osp.join(first['root'], 'images')
    for r in rows[::97]:  # the label is SSIM against the pristine crop, recomputed here
        dist, ref = (cv2.imread(osp.join(images, r[k])) for k in ('dist_img', 'ref_img'))
        assert float(r['ssim']) == pytest.approx(ssim(dist, ref), abs=1e-6)
    for dist in DISTORTIONS:  # stronger levels score lower on average
        means = [np.mean([float(r['ssim']) for r in rows
                          if r['distortion'] == dist and int(r['level']) == lv])
                 for lv in range(1, 6)]
        assert all(a > b for a, b in zip(means, means[1:])), (dist, means)

    parts = {s: SyntheticIQADataset(str(tmp_path / 'a'), split=s, tune_fraction=0.2,
                                    crop_size=32) for s in ('train', 'tune', 'test')}
    photos = {s: {d.get_data_info(i)['content'] for i in range(len(d))}
              for s, d in parts.items()}
    assert sum(len(p) for p in photos.values()) == len(PHOTOS)
    assert not (photos['train'] & photos['test'] or photos['tune'] & photos['test']
                or photos['train'] & photos['tune'])
    assert len(parts['test']) == 3 * 4 * 30
    level = SyntheticIQADataset(str(tmp_path / 'a'), split='test', label='level', crop_size=32)
    assert {float(level.get_data_info(i)['gt_score'][0]) for i in range(len(level))} == \
        {0.0, 0.25, 0.5, 0.75, 1.0}


def test_synthetic_iqa_grid_of_crops(tmp_path):
    """crops_per_side=G: G x G distinct crops per photo (the demo configs' G = 4 set is counted
    in test_benchmarks' tune-split test); G = 2 is the default."""
    from mmkd.datasets.synthetic_iqa import pristine_crops
    crops = pristine_crops('astronaut', 16, 4)
    assert len(crops) == 16 and all(c.shape == (16, 16, 3) for c in crops)
    assert len({c.tobytes() for c in crops}) == 16
    assert all(np.array_equal(a, b) for a, b in zip(pristine_crops('coins', 16),
                                                    pristine_crops('coins', 16, 2)))
    with pytest.raises(ValueError, match='crops_per_side must be an int >= 1'):
        make_synthetic_iqa(str(tmp_path / 'bad'), crop_size=16, crops_per_side=0)


def test_iqa_demo_student_trains_and_reports_srcc_plcc_through_tools_train(tmp_path):
    """The no-reference demo student through tools/train.py: L1 loss logged, SRCC / PLCC
    reported on the test photos (generated into a temporary data root)."""
    import re

    from conftest import REPO, run_tool
    config = osp.join(REPO, 'configs', 'demo', 'iqa', 'resnet18-tiny_synthetic-iqa.py')
    root = str(tmp_path / 'data')
    out = run_tool(['tools/train.py', config, '--work-dir', str(tmp_path / 'work'),
                    '--cfg-options', f'train_dataloader.dataset.data_root={root}',
                    f'val_dataloader.dataset.data_root={root}',
                    'train_dataloader.dataset.indices=64', 'val_dataloader.dataset.indices=64',
                    'train_cfg.max_epochs=1', 'train_cfg.val_interval=1',
                    'default_hooks.logger.interval=1']).stdout
    assert re.search(r'Epoch\(train\).*loss: [0-9.]+', out), out[-3000:]
    srcc, plcc = map(float, re.findall(r'iqa/srcc: ([-0-9.na]+)\s+iqa/plcc: ([-0-9.na]+)',
                                       out)[-1])
    assert -1 <= srcc <= 1 and -1 <= plcc <= 1
    assert osp.isfile(osp.join(root, 'meta.json'))
