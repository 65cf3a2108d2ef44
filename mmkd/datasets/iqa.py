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
- checks every record at load (``load_data_list``), before training starts: each score must be a
  finite number no further outside the scale than ``score_margin`` (a quarter of its width by
  default, :class:`IQADataset`), and every image and reference the annotations list must exist.
  Each error names the dataset class, the annotation file, the row (a CSV line as a spreadsheet
  numbers it, header = line 1, with the image name; a MAT entry by its MATLAB index, 1-based)
  and the setting to change.

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
import math
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
        score_margin (float): how far outside ``score_range`` a score may lie, as a fraction of
            its width; a score further out, or one that is not finite, is refused at load with
            its file and row. Default 0.25 (LIVE 0-100 accepts -25 .. 125, KADID-10k 1-5 accepts
            0 .. 6). Where it comes from: the published annotations lie inside their scales
            (without LIVE's reference copies: LIVE dmos.mat 17.9-84.5, LIVEC 3.4-92.4,
            KonIQ-10k MOS_zscore 3.9-88.4, KADID-10k 1.00-4.93; read from the copies in pyiqa's
            meta_info), but averaging rescaled z-scores and realignment (LIVE's
            dmos_realigned.mat) can carry a score a little past an end, so the margin is a
            generous multiple of that; a quarter still refuses a score on another scale (50 on
            1-5, or MOS_zscore 0-100 read as 1-5).
        non_aligned_refs (str, optional): ``'train'`` or a folder of pristine images: give each
            item a ``nar_path`` (module docstring). Default None.
        nar_seed (int): draws of the non-training splits. Default 0.
        pipeline, test_mode, lazy_init, indices, ...: as mmpretrain's ``BaseDataset``.
    """
    SCORE_RANGE: Tuple[float, float] = (0.0, 1.0)
    HIGHER_IS_BETTER = True
    METAINFO = dict(classes=('quality', ))
    #: the arguments that say where the images are (named when one is missing)
    LAYOUT_SETTINGS: Tuple[str, ...] = ('data_root', )

    def __init__(self, data_root: str, split: str = 'train', split_seed: int = 0,
                 test_fraction: float = 0.2, tune_fraction: float = 0.0,
                 score_range: Optional[Tuple[float, float]] = None, pipeline: Sequence = (),
                 non_aligned_refs: Optional[str] = None, nar_seed: int = 0,
                 score_margin: float = 0.25, **kwargs):
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
        if (isinstance(score_margin, bool) or not isinstance(score_margin, (int, float))
                or not 0 <= score_margin < math.inf):
            raise ValueError(f'{name} score_margin must be a finite number >= 0 (a fraction of '
                             f'the score_range width), got {score_margin!r}')
        self.score_margin = float(score_margin)
        kwargs.pop('ann_file', None)
        super().__init__(ann_file='', data_root=data_root, pipeline=pipeline, **kwargs)

    # -- what each layout provides -------------------------------------------------------
    def read_records(self) -> List[dict]:
        """[dict(img_path, raw_score, content, ref_path (or None), distortion (or None),
        where)]: ``where`` names the annotation file and row of the record, for errors."""
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

    def accepted_range(self) -> Tuple[float, float]:
        """``score_range`` widened by ``score_margin`` of its width on each side."""
        lo, hi = self.score_range
        pad = self.score_margin * (hi - lo)
        return lo - pad, hi + pad

    def check_scores(self, records: List[dict]) -> None:
        """Refuse a score that is not finite or lies outside :meth:`accepted_range`: either
        would become a label the loss trusts (NaN, or a quality of 12.25)."""
        name, (lo, hi) = type(self).__name__, self.score_range
        low, high = self.accepted_range()
        for r in records:
            raw = float(r['raw_score'])
            if not math.isfinite(raw):
                raise ValueError(f'{name}: score {raw} at {_where(r)} is not a finite number (it '
                                 'would make the loss non-finite); fix or remove that entry of '
                                 'the annotations: no score_range or score_margin accepts it')
            if not low <= raw <= high:
                raise ValueError(
                    f'{name}: score {raw:g} at {_where(r)} is outside the scale '
                    f'score_range=({lo:g}, {hi:g}) even with score_margin={self.score_margin:g} '
                    f'(accepted {low:g} .. {high:g}). If the file is on another scale, set '
                    'score_range=(low, high) to it (the common ones are 1-5 and 0-100); if scores '
                    'this far out are genuine, raise score_margin; otherwise fix that entry')

    def check_files(self, records: List[dict]) -> None:
        """Every image and reference the annotations list exists (at load, not mid-training)."""
        name = type(self).__name__
        settings = ', '.join(f'{k}={getattr(self, k)!r}' for k in self.LAYOUT_SETTINGS)
        hint = (f'check {settings} (layout in the docstring of mmkd.datasets.iqa) or restore '
                'the files')
        missing = [r for r in records if not osp.isfile(r['img_path'])]
        if missing:
            examples = '; '.join(f"{r['img_path']} (listed at {_where(r)})"
                                 for r in missing[:3])
            raise FileNotFoundError(f'{name}: {len(missing)} of {len(records)} images listed in '
                                    f'the annotations are missing, e.g. {examples}; {hint}')
        refs: Dict[str, dict] = {}
        for r in records:
            if r.get('ref_path'):
                refs.setdefault(r['ref_path'], r)
        missing = [p for p in refs if not osp.isfile(p)]
        if missing:
            examples = '; '.join(f'{p} (reference of {_where(refs[p])})' for p in missing[:3])
            raise FileNotFoundError(f'{name}: {len(missing)} of {len(refs)} reference images '
                                    f'listed in the annotations are missing, e.g. {examples}; '
                                    f'{hint}')

    # -- BaseDataset -----------------------------------------------------------------------
    def load_data_list(self) -> List[dict]:
        records = self.read_records()
        if not records:
            raise ValueError(f'{type(self).__name__}: no images found under {self.data_root}')
        self.check_scores(records)
        self.check_files(records)
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


def _where(record: dict) -> str:
    return record.get('where') or 'the annotations'


def _loadmat(owner: str, path: str, expected: str) -> dict:
    """``scipy.io.loadmat(path)``, or a ValueError naming the file and what it should hold."""
    from scipy.io import loadmat
    try:
        return loadmat(path)
    except Exception as e:  # scipy: ValueError, MatReadError, NotImplementedError (v7.3), ...
        raise ValueError(f'{owner}: {path} is not a MAT file scipy.io.loadmat can read '
                         f'({type(e).__name__}: {e}); expected {expected} (MAT versions 4 to '
                         "7.2; re-save a v7.3 file with MATLAB's save(..., '-v7'))") from e


def _mat_variable(owner: str, path: str, mat: dict, key: str, setting: str) -> np.ndarray:
    """``mat[key]``, or a KeyError naming the file, the variables it holds and the setting."""
    if key not in mat:
        found = sorted(k for k in mat if not k.startswith('__'))
        raise KeyError(f'{owner}: {path} has no variable {key!r} (it holds {found}); {setting}')
    return mat[key]


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
        dmos_path = self._path(self.dmos_file)
        mat = _loadmat('LIVEDataset', dmos_path, "LIVE release 2's dmos.mat (dmos, orgs) or "
                       'dmos_realigned.mat (dmos_new, orgs)')
        key = 'dmos_new' if 'dmos_new' in mat else 'dmos'
        setting = ("set dmos_file='dmos.mat' (dmos, orgs) or 'dmos_realigned.mat' (dmos_new, "
                   'orgs), the files of LIVE release 2')
        dmos = _mat_variable('LIVEDataset', dmos_path, mat, key, setting).reshape(-1)
        orgs = _mat_variable('LIVEDataset', dmos_path, mat, 'orgs', setting).reshape(-1)
        names_path = self._path('refnames_all.mat')
        refs = _mat_strings(_mat_variable(
            'LIVEDataset', names_path,
            _loadmat('LIVEDataset', names_path, "LIVE release 2's refnames_all.mat "
                     '(refnames_all)'), 'refnames_all',
            f"data_root={self.data_root!r} must hold LIVE release 2's refnames_all.mat"))
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
                        distortion=folder,
                        where=f'{dmos_path} entry {key}({i + 1}) ({folder}/img{k}.bmp)'))
                i += 1
        return records


@DATASETS.register_module()
class LIVEChallengeDataset(IQADataset):
    """LIVE In the Wild Image Quality Challenge (Ghadiyaram & Bovik): 1,162 authentically
    distorted photographs, MOS 0-100, no references (each image its own content).
    ``images_key`` / ``mos_key``: the variables of ``Data/AllImages_release.mat`` and
    ``Data/AllMOS_release.mat`` (default the published names), for re-saved copies."""
    SCORE_RANGE = (0.0, 100.0)

    def __init__(self, data_root: str, skip_first: int = 7,
                 images_key: str = 'AllImages_release', mos_key: str = 'AllMOS_release',
                 **kwargs):
        self.skip_first, self.images_key, self.mos_key = skip_first, images_key, mos_key
        super().__init__(data_root, **kwargs)

    def _variable(self, file: str, key: str, setting: str) -> Tuple[np.ndarray, str]:
        """(the variable ``key`` of ``Data/<file>``, the file's path)."""
        path = self._path('Data', file)
        mat = _loadmat('LIVEChallengeDataset', path,
                       f'the LIVE Challenge release\'s {file} holding the variable {key!r}')
        return _mat_variable('LIVEChallengeDataset', path, mat, key,
                             f'set {setting}= to the variable that holds them (published: '
                             f'{osp.splitext(file)[0]!r})'), path

    def read_records(self) -> List[dict]:
        names, _ = self._variable('AllImages_release.mat', self.images_key, 'images_key')
        names = _mat_strings(names)
        mos, mos_path = self._variable('AllMOS_release.mat', self.mos_key, 'mos_key')
        mos = mos.reshape(-1)
        if len(names) != len(mos):
            raise ValueError(f'LIVEChallengeDataset: {len(names)} names but {len(mos)} scores')
        return [dict(img_path=osp.join(self.data_root, 'Images', n), raw_score=float(s),
                     content=n, where=f'{mos_path} entry {self.mos_key}({i + 1}) ({n})')
                for i, (n, s) in enumerate(zip(names, mos)) if i >= self.skip_first]


def _read_csv(owner: str, path: str, columns: Sequence[str],
              csv_file: str) -> List[Tuple[int, dict]]:
    """[(line, row)] of a CSV file with a header; ``line`` as a spreadsheet numbers it (the
    header is line 1). A row with fewer fields than the header is refused (``csv.DictReader``
    would fill the missing ones with None)."""
    with open(path, newline='') as f:
        reader = csv.DictReader(f)
        rows = [(reader.line_num, row) for row in reader]
        header = reader.fieldnames or []
    missing = [c for c in columns if rows and c not in rows[0][1]]
    if not rows or missing:
        raise KeyError(f'{path}: columns {missing or list(columns)} missing (has '
                       f'{list(rows[0][1]) if rows else "no rows"})')
    for line, row in rows:
        short = [c for c in header if row.get(c) is None]
        if short:
            count = len(header) - len(short)
            raise ValueError(f'{owner}: {path} line {line} has {count} field'
                             f'{"" if count == 1 else "s"}, the header {len(header)} (no '
                             f'{short}); fix that row, or set csv_file (now {csv_file!r}) to '
                             'the published file')
    return rows


def _csv_score(owner: str, path: str, line: int, row: dict, column: str, image: str,
               setting: str) -> float:
    """``float(row[column])``, or a ValueError naming the file, line, image and setting."""
    text = row[column]
    try:
        return float(text)
    except ValueError:
        what = 'is empty' if not text.strip() else f'{text!r} is not a number'
        raise ValueError(f'{owner}: {path} line {line} ({image}): {column} {what}; fix that '
                         f'row, or {setting}') from None


@DATASETS.register_module()
class KonIQ10kDataset(IQADataset):
    """KonIQ-10k (Hosu et al.): 10,073 in-the-wild images, no references. ``score_key`` 'MOS'
    (1-5, default) or 'MOS_zscore' (0-100, give ``score_range=(0, 100)``)."""
    SCORE_RANGE = (1.0, 5.0)
    LAYOUT_SETTINGS = ('data_root', 'image_folder')

    def __init__(self, data_root: str, score_key: str = 'MOS',
                 csv_file: str = 'koniq10k_scores_and_distributions.csv',
                 image_folder: str = '1024x768', **kwargs):
        self.score_key, self.csv_file, self.image_folder = score_key, csv_file, image_folder
        super().__init__(data_root, **kwargs)

    def read_records(self) -> List[dict]:
        path = self._path(self.csv_file)
        rows = _read_csv('KonIQ10kDataset', path, ('image_name', self.score_key),
                         self.csv_file)
        folder = self._path(self.image_folder)
        setting = (f"set score_key (now {self.score_key!r}) to a numeric column ('MOS' 1-5 or "
                   "'MOS_zscore' 0-100)")
        return [dict(img_path=osp.join(folder, r['image_name']),
                     raw_score=_csv_score('KonIQ10kDataset', path, line, r, self.score_key,
                                          r['image_name'], setting),
                     content=r['image_name'], where=f"{path} line {line} ({r['image_name']})")
                for line, r in rows]


@DATASETS.register_module()
class KADID10kDataset(IQADataset):
    """KADID-10k (Lin, Hosu, Saupe): 10,125 images, 81 references x 25 distortions x 5 levels;
    ``dmos`` 1-5, higher = better. Split by reference."""
    SCORE_RANGE = (1.0, 5.0)
    LAYOUT_SETTINGS = ('data_root', 'image_folder')

    def __init__(self, data_root: str, csv_file: str = 'dmos.csv', image_folder: str = 'images',
                 **kwargs):
        self.csv_file, self.image_folder = csv_file, image_folder
        super().__init__(data_root, **kwargs)

    def read_records(self) -> List[dict]:
        path = self._path(self.csv_file)
        rows = _read_csv('KADID10kDataset', path, ('dist_img', 'ref_img', 'dmos'),
                         self.csv_file)
        folder = self._path(self.image_folder)
        setting = (f"set csv_file (now {self.csv_file!r}) to KADID-10k's dmos.csv, which has a "
                   'number in every row')
        out = []
        for line, r in rows:
            # I01_02_03.png: reference 1, distortion type 2, level 3
            parts = osp.splitext(r['dist_img'])[0].split('_')
            out.append(dict(img_path=osp.join(folder, r['dist_img']),
                            raw_score=_csv_score('KADID10kDataset', path, line, r, 'dmos',
                                                 r['dist_img'], setting),
                            content=r['ref_img'], ref_path=osp.join(folder, r['ref_img']),
                            distortion=parts[1] if len(parts) == 3 else None,
                            where=f"{path} line {line} ({r['dist_img']})"))
        return out


__all__ = ['IQADataset', 'LIVEDataset', 'LIVEChallengeDataset', 'KonIQ10kDataset',
           'KADID10kDataset', 'split_by_content']
