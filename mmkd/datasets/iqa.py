"""Image-quality-assessment (IQA) datasets in their published file layouts, for mmpretrain.

Every reader yields one record per distorted image: its file, its published score, and its
*content* (the pristine reference it was made from; for authentic-distortion sets without
references, the image itself). :class:`IQADataset` then

- splits by content (``split_by_content``): the papers' protocol, 80 % / 20 % at random,
  repeated with ``split_seed`` = 0 .. 9 and the mean / median reported; for the sets with
  references no content crosses train / test (LIVE: 23 / 6 of the 29 references). A ``'tune'``
  split is carved out of the training contents (``tune_fraction``) for choosing
  hyperparameters; ``'test'`` never moves.
- normalises the score to quality in [0, 1], **higher = better**, from the dataset's stated
  range (``SCORE_RANGE``; DMOS, where higher is worse, is flipped). The range is the scale's,
  not the data's min / max, so scores a little outside it map a little outside [0, 1];
  SRCC / PLCC do not change under this affine map.

Data info: ``img_path``, ``gt_score`` ((1,) float32, normalised; mmpretrain's ``PackInputs``
packs it into the data sample), ``raw_score``, ``content`` and, where the set has references,
``ref_path`` (the aligned pristine image; a no-reference student never reads it).

**Non-aligned references** (RKIQT's teacher, after CVRKD-IQA): with ``non_aligned_refs`` each
item also gets ``nar_path``, a pristine image of *other* content, from a pool that never holds
test content: ``'train'`` (the references of this split seed's training contents, whatever
split is read, so 'tune' and 'test' items also draw training references only) or a folder of
pristine images of another set (for LIVEC / KonIQ-10k, which have no references; e.g. KADID-10k's
81 references). Training draws a new one each time an item is read (numpy's generator, which
MMEngine seeds per worker); 'tune' / 'test' draw one per item from ``nar_seed``, the same every
epoch. Load it with ``dict(type='mmkd.LoadImageFromFileAs', key='nar_img', path_key='nar_path')``.
RKIQT draws its references at random from a pristine pool; how many and how often is not stated
(our choice: one per read).

Layouts (relative to ``data_root``), as the sets are distributed:

===========  ==============================================================================
LIVE (r2)    ``refimgs/*.bmp``; ``jp2k``, ``jpeg``, ``wn``, ``gblur``, ``fastfading`` with
             ``img1.bmp ...`` (227, 233, 174, 174, 174 images); ``dmos.mat`` (``dmos``,
             ``orgs``: 1 for the references' own copies, excluded) or ``dmos_realigned.mat``
             (``dmos_new``, ``orgs``); ``refnames_all.mat`` (``refnames_all``). DMOS, 0-100.
LIVEC        ``Images/*``; ``Data/AllImages_release.mat`` (``AllImages_release``),
             ``Data/AllMOS_release.mat`` (``AllMOS_release``); the first 7 entries are the
             study's training images (``skip_first=7``, as HyperIQA / TReS). MOS, 0-100.
KonIQ-10k    ``koniq10k_scores_and_distributions.csv`` (``image_name``, ``MOS`` 1-5,
             ``MOS_zscore`` 0-100); images in ``1024x768/`` (``image_folder``).
KADID-10k    ``dmos.csv`` (``dist_img``, ``ref_img``, ``dmos``: in spite of its name a mean
             opinion score, 1-5, higher = better); images (references too) in ``images/``.
===========  ==============================================================================
"""
import csv
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from mmpretrain.datasets import BaseDataset

from mmkd.registry import DATASETS

SPLITS = ('train', 'tune', 'test')


def split_by_content(contents: Sequence[str], test_fraction: float = 0.2, seed: int = 0,
                     tune_fraction: float = 0.0) -> Dict[str, List[str]]:
    """Contents of each split: ``{'train', 'tune', 'test'} -> sorted content names``.

    ``round(test_fraction * M)`` of the M distinct contents (at least one) go to ``test``, from
    a permutation by numpy's ``default_rng(seed)`` (PCG64, stable across numpy versions) of the
    sorted names; ``tune`` takes ``round(tune_fraction * rest)`` of the rest (its own seed,
    ``seed + 1``), ``train`` keeps the others. The same inputs always give the same split."""
    names = sorted(set(contents))
    if not 0.0 < test_fraction < 1.0 or not 0.0 <= tune_fraction < 1.0:
        raise ValueError(f'split_by_content: test_fraction must be in (0, 1) and '
                         f'tune_fraction in [0, 1), got {test_fraction}, {tune_fraction}')
    if len(names) < 2:
        raise ValueError(f'split_by_content: {len(names)} distinct contents cannot be split')
    order = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    num_test = min(max(1, int(round(test_fraction * len(names)))), len(names) - 1)
    test, rest = order[:num_test], sorted(order[num_test:])
    tune = []
    if tune_fraction > 0:
        num_tune = min(max(1, int(round(tune_fraction * len(rest)))), len(rest) - 1)
        picked = np.random.default_rng(seed + 1).permutation(len(rest))[:num_tune]
        tune = [rest[i] for i in picked]
    train = [c for c in rest if c not in set(tune)]
    return dict(train=sorted(train), tune=sorted(tune), test=sorted(test))


class IQADataset(BaseDataset):
    """Base of the IQA readers: a split by content and normalised quality (module docstring).

    Args:
        data_root (str): the set's folder, laid out as published.
        split (str): 'train', 'tune' (needs ``tune_fraction > 0``) or 'test'.
        split_seed (int): which of the repeated random splits (the papers use 0 .. 9).
        test_fraction (float): share of the contents in 'test'. Default 0.2.
        tune_fraction (float): share of the training contents held out as 'tune'. Default 0.
        score_range (tuple, optional): (low, high) of the score scale; default the set's.
        non_aligned_refs (str, optional): ``'train'`` or a folder of pristine images: give each
            item a ``nar_path`` (module docstring). Default None.
        nar_seed (int): draws of the non-training splits. Default 0.
        pipeline, test_mode, lazy_init, indices, ...: as mmpretrain's ``BaseDataset``.
    """
    SCORE_RANGE: Tuple[float, float] = (0.0, 1.0)
    HIGHER_IS_BETTER = True
    METAINFO = dict(classes=('quality', ))

    def __init__(self, data_root: str, split: str = 'train', split_seed: int = 0,
                 test_fraction: float = 0.2, tune_fraction: float = 0.0,
                 score_range: Optional[Tuple[float, float]] = None, pipeline: Sequence = (),
                 non_aligned_refs: Optional[str] = None, nar_seed: int = 0, **kwargs):
        name = type(self).__name__
        if non_aligned_refs is not None and (not isinstance(non_aligned_refs, str)
                                             or not non_aligned_refs):
            raise ValueError(f"{name} non_aligned_refs must be None, 'train' or a folder of "
                             f'pristine images, got {non_aligned_refs!r}')
        self.non_aligned_refs, self.nar_seed = non_aligned_refs, int(nar_seed)
        self.nar_pool: List[Tuple[str, str]] = []  # (path, content), filled with the data list
        if split not in SPLITS:
            raise ValueError(f'{name} split must be one of {list(SPLITS)}, got {split!r}')
        if split == 'tune' and tune_fraction == 0:
            raise ValueError(f"{name} split='tune' needs tune_fraction > 0 (e.g. 0.2): the "
                             'tuning split is carved out of the training contents')
        lo, hi = score_range or self.SCORE_RANGE
        if not hi > lo:
            raise ValueError(f'{name} score_range must be (low, high) with high > low, got '
                             f'{score_range!r}')
        self.split, self.split_seed = split, int(split_seed)
        self.test_fraction, self.tune_fraction = float(test_fraction), float(tune_fraction)
        self.score_range = (float(lo), float(hi))
        kwargs.pop('ann_file', None)
        super().__init__(ann_file='', data_root=data_root, pipeline=pipeline, **kwargs)

    # -- what each layout provides -------------------------------------------------------
    def read_records(self) -> List[dict]:
        """[dict(img_path, raw_score, content, ref_path (or None), distortion (or None))]."""
        raise NotImplementedError

    def _path(self, *parts) -> str:
        path = osp.join(self.data_root, *parts)
        if not osp.exists(path):
            raise FileNotFoundError(f'{type(self).__name__}: {path} does not exist (data_root '
                                    f'{self.data_root!r}; expected layout in the docstring '
                                    'of mmkd.datasets.iqa)')
        return path

    def normalise(self, raw: float) -> float:
        lo, hi = self.score_range
        q = (float(raw) - lo) / (hi - lo)
        return q if self.HIGHER_IS_BETTER else 1.0 - q

    # -- BaseDataset -----------------------------------------------------------------------
    def load_data_list(self) -> List[dict]:
        records = self.read_records()
        if not records:
            raise ValueError(f'{type(self).__name__}: no images found under {self.data_root}')
        missing = [r['img_path'] for r in records if not osp.isfile(r['img_path'])]
        if missing:
            raise FileNotFoundError(f'{type(self).__name__}: {len(missing)} of {len(records)} '
                                    f'images listed in the annotations are missing, e.g. '
                                    f'{missing[:3]}')
        self.contents = split_by_content([r['content'] for r in records], self.test_fraction,
                                         self.split_seed, self.tune_fraction)
        keep = set(self.contents[self.split])
        data_list = []
        for r in records:
            if r['content'] not in keep:
                continue
            info = dict(img_path=r['img_path'],
                        gt_score=np.array([self.normalise(r['raw_score'])], np.float32),
                        raw_score=float(r['raw_score']), content=r['content'])
            if r.get('ref_path'):
                info['ref_path'] = r['ref_path']
            if r.get('distortion') is not None:
                info['distortion'] = r['distortion']
            data_list.append(info)
        if self.non_aligned_refs is not None:
            self.nar_pool = self._nar_pool(records)
        return data_list

    IMAGE_EXTENSIONS = ('.bmp', '.png', '.jpg', '.jpeg', '.tif', '.tiff')

    def _nar_pool(self, records) -> List[Tuple[str, str]]:
        """[(path, content)] of the pristine images non-aligned references are drawn from."""
        name = type(self).__name__
        if self.non_aligned_refs == 'train':
            train = set(self.contents['train'])
            pool = sorted({(r['ref_path'], r['content']) for r in records
                           if r.get('ref_path') and r['content'] in train})
            if not pool:
                raise ValueError(f"{name}: non_aligned_refs='train' needs references, and this "
                                 'set has none in its training split; give a folder of '
                                 'pristine images instead (e.g. KADID-10k\'s references)')
        else:
            folder = self.non_aligned_refs
            if not osp.isdir(folder):
                raise FileNotFoundError(f'{name}: non_aligned_refs folder {folder!r} does not '
                                        'exist')
            pool = [(osp.join(folder, f), osp.splitext(f)[0]) for f in sorted(os.listdir(folder))
                    if f.lower().endswith(self.IMAGE_EXTENSIONS)]
            if not pool:
                raise ValueError(f'{name}: no images ({", ".join(self.IMAGE_EXTENSIONS)}) in '
                                 f'non_aligned_refs folder {folder!r}')
            test = set(self.contents['test'])
            if any(c in test for _, c in pool):
                raise ValueError(f'{name}: the non_aligned_refs folder {folder!r} holds test '
                                 'content; references must never show test content')
        if len({c for _, c in pool}) < 2 and self.split == 'train':
            raise ValueError(f'{name}: {len(pool)} pristine image(s) of one content cannot give '
                             'every training item a reference of other content')
        return pool

    def get_data_info(self, idx: int) -> dict:
        info = super().get_data_info(idx)
        if self.non_aligned_refs is not None:
            info['nar_path'] = self.draw_reference(info['content'], idx)
        return info

    def draw_reference(self, content: str, idx: int) -> str:
        """A pristine image of other content than ``content`` (module docstring)."""
        choices = [p for p, c in self.nar_pool if c != content]
        if not choices:
            raise ValueError(f'{type(self).__name__}: no non-aligned reference of other content '
                             f'than {content!r} in the pool of {len(self.nar_pool)}')
        if self.split == 'train':
            return choices[np.random.randint(len(choices))]
        rng = np.random.default_rng([self.nar_seed, idx])
        return choices[int(rng.integers(len(choices)))]


def _loadmat(path: str) -> dict:
    from scipy.io import loadmat
    return loadmat(path)


def _mat_strings(cell) -> List[str]:
    """A MATLAB cell array of strings (as scipy reads it) as a list of str."""
    return [str(np.asarray(x).reshape(-1)[0]) for x in np.asarray(cell, dtype=object).reshape(-1)]


@DATASETS.register_module()
class LIVEDataset(IQADataset):
    """LIVE Image Quality Assessment Database, release 2 (Sheikh et al.): 779 distorted images
    of 29 references, 5 distortions; DMOS, lower = better, range 0-100 (flipped to quality).
    Split by reference (``content`` = reference name). ``dmos_file`` 'dmos.mat' (``dmos``) or
    'dmos_realigned.mat' (``dmos_new``, the realigned scores most papers use)."""
    SCORE_RANGE = (0.0, 100.0)
    HIGHER_IS_BETTER = False
    #: folder -> number of images, in the order of dmos.mat
    DISTORTIONS = (('jp2k', 227), ('jpeg', 233), ('wn', 174), ('gblur', 174),
                   ('fastfading', 174))

    def __init__(self, data_root: str, dmos_file: str = 'dmos.mat', **kwargs):
        self.dmos_file = dmos_file
        super().__init__(data_root, **kwargs)

    def read_records(self) -> List[dict]:
        mat = _loadmat(self._path(self.dmos_file))
        key = 'dmos_new' if 'dmos_new' in mat else 'dmos'
        if key not in mat or 'orgs' not in mat:
            raise KeyError(f'LIVEDataset: {self.dmos_file} has no dmos / dmos_new and orgs '
                           f'arrays (found {sorted(k for k in mat if not k.startswith("__"))})')
        dmos, orgs = mat[key].reshape(-1), mat['orgs'].reshape(-1)
        refs = _mat_strings(_loadmat(self._path('refnames_all.mat'))['refnames_all'])
        total = sum(n for _, n in self.DISTORTIONS)
        if not len(dmos) == len(orgs) == len(refs) == total:
            raise ValueError(f'LIVEDataset: {len(dmos)} scores, {len(orgs)} flags and '
                             f'{len(refs)} reference names; release 2 has {total} of each')
        records, i = [], 0
        for folder, count in self.DISTORTIONS:
            for k in range(1, count + 1):
                if not orgs[i]:
                    records.append(dict(
                        img_path=osp.join(self.data_root, folder, f'img{k}.bmp'),
                        raw_score=float(dmos[i]), content=refs[i],
                        ref_path=osp.join(self.data_root, 'refimgs', refs[i]),
                        distortion=folder))
                i += 1
        return records


@DATASETS.register_module()
class LIVEChallengeDataset(IQADataset):
    """LIVE In the Wild Image Quality Challenge (Ghadiyaram & Bovik): 1,162 authentically
    distorted photographs, MOS 0-100, no references (each image its own content)."""
    SCORE_RANGE = (0.0, 100.0)

    def __init__(self, data_root: str, skip_first: int = 7, **kwargs):
        self.skip_first = skip_first
        super().__init__(data_root, **kwargs)

    def read_records(self) -> List[dict]:
        names = _mat_strings(_loadmat(self._path('Data', 'AllImages_release.mat'))
                             ['AllImages_release'])
        mos = _loadmat(self._path('Data', 'AllMOS_release.mat'))['AllMOS_release'].reshape(-1)
        if len(names) != len(mos):
            raise ValueError(f'LIVEChallengeDataset: {len(names)} names but {len(mos)} scores')
        return [dict(img_path=osp.join(self.data_root, 'Images', n), raw_score=float(s),
                     content=n) for n, s in list(zip(names, mos))[self.skip_first:]]


def _read_csv(path: str, columns: Sequence[str]) -> List[dict]:
    with open(path, newline='') as f:
        rows = list(csv.DictReader(f))
    missing = [c for c in columns if rows and c not in rows[0]]
    if not rows or missing:
        raise KeyError(f'{path}: columns {missing or list(columns)} missing (has '
                       f'{list(rows[0]) if rows else "no rows"})')
    return rows


@DATASETS.register_module()
class KonIQ10kDataset(IQADataset):
    """KonIQ-10k (Hosu et al.): 10,073 in-the-wild images, no references. ``score_key`` 'MOS'
    (1-5, default) or 'MOS_zscore' (0-100, give ``score_range=(0, 100)``)."""
    SCORE_RANGE = (1.0, 5.0)

    def __init__(self, data_root: str, score_key: str = 'MOS',
                 csv_file: str = 'koniq10k_scores_and_distributions.csv',
                 image_folder: str = '1024x768', **kwargs):
        self.score_key, self.csv_file, self.image_folder = score_key, csv_file, image_folder
        super().__init__(data_root, **kwargs)

    def read_records(self) -> List[dict]:
        rows = _read_csv(self._path(self.csv_file), ('image_name', self.score_key))
        folder = self._path(self.image_folder)
        return [dict(img_path=osp.join(folder, r['image_name']),
                     raw_score=float(r[self.score_key]), content=r['image_name']) for r in rows]


@DATASETS.register_module()
class KADID10kDataset(IQADataset):
    """KADID-10k (Lin, Hosu, Saupe): 10,125 images, 81 references x 25 distortions x 5 levels;
    ``dmos`` 1-5, higher = better. Split by reference."""
    SCORE_RANGE = (1.0, 5.0)

    def __init__(self, data_root: str, csv_file: str = 'dmos.csv', image_folder: str = 'images',
                 **kwargs):
        self.csv_file, self.image_folder = csv_file, image_folder
        super().__init__(data_root, **kwargs)

    def read_records(self) -> List[dict]:
        rows = _read_csv(self._path(self.csv_file), ('dist_img', 'ref_img', 'dmos'))
        folder = self._path(self.image_folder)
        out = []
        for r in rows:
            # I01_02_03.png: reference 1, distortion type 2, level 3
            parts = osp.splitext(r['dist_img'])[0].split('_')
            out.append(dict(img_path=osp.join(folder, r['dist_img']),
                            raw_score=float(r['dmos']), content=r['ref_img'],
                            ref_path=osp.join(folder, r['ref_img']),
                            distortion=parts[1] if len(parts) == 3 else None))
        return out


__all__ = ['IQADataset', 'LIVEDataset', 'LIVEChallengeDataset', 'KonIQ10kDataset',
           'KADID10kDataset', 'split_by_content']
