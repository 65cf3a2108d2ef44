"""A small, real, offline image-classification dataset: scikit-learn's handwritten digits.

``sklearn.datasets.load_digits`` ships 1,797 real 8x8 grey-level scans of handwritten digits
(UCI "optdigits", values 0..16, classes 0..9, about 180 per class) inside the scikit-learn wheel,
so this dataset needs no download and writes no files. That makes it the classification
counterpart of the synthetic shapes data in :mod:`mmkd.datasets.shapes`: big enough for a
teacher to beat a student by a measurable margin, small enough to train on a CPU in minutes.
"""
import logging
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np
from mmengine.logging import print_log
from mmpretrain.datasets import BaseDataset

from mmkd.registry import DATASETS

DIGIT_CLASSES = tuple(str(i) for i in range(10))

# ``load_digits`` parses a gzipped CSV (about 50 ms); every instance (train and test, teacher and
# student runs in one process) shares one read-only copy.
_DIGITS_CACHE: Optional[Tuple[np.ndarray, np.ndarray]] = None


def _load_raw_digits() -> Tuple[np.ndarray, np.ndarray]:
    """Return ``(images, labels)``: ``images`` (1797, 8, 8) float64 in [0, 16], ``labels``
    (1797,) int64 in [0, 9]. Imported lazily so scikit-learn is only needed by this dataset."""
    global _DIGITS_CACHE
    if _DIGITS_CACHE is None:
        from sklearn.datasets import load_digits
        bunch = load_digits()
        images = np.asarray(bunch.images, dtype=np.float64)
        labels = np.asarray(bunch.target, dtype=np.int64)
        images.setflags(write=False)
        labels.setflags(write=False)
        _DIGITS_CACHE = (images, labels)
    return _DIGITS_CACHE


def stratified_split(labels: Sequence[int], test_fraction: float = 0.25,
                     seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """Deterministic stratified train/test split of sample indices.

    Implemented here (rather than with ``sklearn.model_selection``) so the split depends only on
    numpy's ``default_rng`` (PCG64, stable across numpy versions) and not on a library's
    internal shuffling strategy.

    * The test set has ``ceil(test_fraction * N)`` samples (450 of 1,797 for 0.25), train the rest.
    * Each class contributes in proportion to its size: per-class quotas are the floors of the
      exact shares, and the leftover samples go to the classes with the largest fractional
      remainders (ties broken by class order), so the total is exact.
    * Within each class, the test samples are the first ``quota`` of a ``seed``-driven
      permutation. Both returned index arrays are sorted ascending.

    Args:
        labels: (N,) integer class labels.
        test_fraction: fraction of samples in the test split, in (0, 1).
        seed: seed of the permutation; the same seed always gives the same split.

    Returns:
        tuple: ``(train_idx, test_idx)``, two disjoint sorted int64 arrays whose union is
        ``arange(N)``.
    """
    labels = np.asarray(labels)
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f'test_fraction must be in (0, 1), got {test_fraction}')
    num = len(labels)
    num_test = int(np.ceil(test_fraction * num))
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * num_test / num
    quotas = np.floor(exact).astype(np.int64)
    leftover = num_test - int(quotas.sum())
    # Stable sort on the negated remainder: largest remainder first, ties in class order.
    order = np.argsort(-(exact - quotas), kind='stable')
    quotas[order[:leftover]] += 1

    rng = np.random.default_rng(seed)
    test_parts = []
    for cls, quota in zip(classes, quotas):
        members = np.flatnonzero(labels == cls)
        test_parts.append(rng.permutation(members)[:quota])
    test_idx = np.sort(np.concatenate(test_parts)).astype(np.int64)
    is_test = np.zeros(num, dtype=bool)
    is_test[test_idx] = True
    train_idx = np.flatnonzero(~is_test).astype(np.int64)
    return train_idx, test_idx


def digit_to_image(digit: np.ndarray, img_size: int = 32) -> np.ndarray:
    """Turn one 8x8 digit (values 0..16) into an ``(img_size, img_size, 3)`` uint8 image.

    The grey levels are rescaled to 0..255 (16 -> 255, ink is bright on a black background as in
    the source data) and upsampled with bilinear interpolation, which keeps strokes smooth rather
    than blocky; the single channel is repeated three times so that the image looks like a
    cv2-loaded BGR image and works with 3-channel backbones and ``data_preprocessor`` mean/std.
    """
    grey = np.asarray(digit, dtype=np.float32) * (255.0 / 16.0)
    if img_size != grey.shape[0]:
        grey = cv2.resize(grey, (img_size, img_size), interpolation=cv2.INTER_LINEAR)
    grey = np.clip(np.rint(grey), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))


def resize_image(img: np.ndarray, size: int) -> np.ndarray:
    """An ``(S, S, 3)`` uint8 image resized to ``(size, size, 3)``: bilinear when enlarging
    (smooth strokes, as :func:`digit_to_image`), area averaging when shrinking."""
    if img.shape[0] == size:
        return img
    interpolation = cv2.INTER_LINEAR if size > img.shape[0] else cv2.INTER_AREA
    return np.ascontiguousarray(cv2.resize(img, (size, size), interpolation=interpolation))


#: Transforms whose crop size should be the dataset's ``img_size`` (the images' side).
CROP_TRANSFORMS = ('RandomCrop', 'CenterCrop')


def check_pipeline_crops(pipeline: Sequence, img_size: int) -> List[str]:
    """Warn about crop transforms of the pipeline (config dicts) whose crop size is not
    ``img_size``: changing ``img_size`` alone leaves a ``RandomCrop(crop_size=16)`` cutting a
    corner out of every 64x64 image, silently. Returns the warnings (also logged)."""
    problems = []
    for t in pipeline or ():
        kind = str(t.get('type', '')).split('.')[-1] if isinstance(t, dict) else ''
        if kind not in CROP_TRANSFORMS or t.get('crop_size') is None:
            continue
        crop = t['crop_size']
        h, w = (crop, crop) if isinstance(crop, int) else tuple(crop)
        if (h, w) != (img_size, img_size):
            problems.append(
                f'DigitsDataset(img_size={img_size}): the pipeline\'s {kind} crops {h}x{w}, '
                f'not the {img_size}x{img_size} images; set its crop_size from the same config '
                f'variable as img_size (crop_size=img_size, as configs/demo/digits do).')
    for text in problems:
        print_log(text, logger='current', level=logging.WARNING)
    return problems


#: Keys of :func:`distort_digit`'s ``distortion`` dict, with their meaning.
DISTORTION_KEYS = {
    'rotate': 'maximum rotation in degrees (uniform in [-rotate, rotate])',
    'scale': 'maximum relative scale change (uniform in [1 - scale, 1 + scale])',
    'shear': 'maximum shear angle in degrees',
    'translate': 'maximum shift as a fraction of the image side',
    'elastic_alpha': 'elastic displacement strength in pixels (Simard et al., 2003)',
    'elastic_sigma': 'Gaussian smoothing of the displacement field, in pixels',
    'noise_std': 'standard deviation of additive Gaussian noise, in grey levels (0..255)',
    'seed': 'seed of the per-image draws (default 0)',
}


def distort_digit(img: np.ndarray, rng: np.random.Generator, rotate: float = 0.0,
                  scale: float = 0.0, shear: float = 0.0, translate: float = 0.0,
                  elastic_alpha: float = 0.0, elastic_sigma: float = 3.0,
                  noise_std: float = 0.0) -> np.ndarray:
    """One random affine + elastic warp plus additive noise of an ``(S, S, 3)`` uint8 digit.

    The affine part turns about the image centre; the elastic part displaces every pixel by a
    random field smoothed with a Gaussian of ``elastic_sigma`` and scaled by ``elastic_alpha``
    (Simard, Steinkraus, Platt, ICDAR 2003, the classic way to make handwritten digits harder
    without changing their class). Both resample bilinearly with a black (no ink) border. The
    three channels stay identical. Returns a new ``(S, S, 3)`` uint8 array.
    """
    size = img.shape[0]
    grey = img[:, :, 0].astype(np.float32)
    centre = (size - 1) / 2.0
    angle = np.deg2rad(rng.uniform(-rotate, rotate))
    zoom = rng.uniform(1.0 - scale, 1.0 + scale)
    sh = np.tan(np.deg2rad(rng.uniform(-shear, shear)))
    shift = rng.uniform(-translate, translate, size=2) * size
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    linear = zoom * rot @ np.array([[1.0, sh], [0.0, 1.0]])
    offset = np.array([centre, centre]) + shift - linear @ np.array([centre, centre])
    matrix = np.hstack([linear, offset[:, None]]).astype(np.float32)
    grey = cv2.warpAffine(grey, matrix, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if elastic_alpha > 0:
        field = rng.uniform(-1, 1, size=(2, size, size)).astype(np.float32)
        field = np.stack([cv2.GaussianBlur(f, (0, 0), elastic_sigma) for f in field])
        field *= elastic_alpha / max(float(np.abs(field).max()), 1e-6)
        ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
        grey = cv2.remap(grey, xs + field[0], ys + field[1], cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if noise_std > 0:
        grey = grey + rng.normal(0.0, noise_std, size=grey.shape).astype(np.float32)
    grey = np.clip(np.rint(grey), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))


@DATASETS.register_module()
class DigitsDataset(BaseDataset):
    """scikit-learn's real handwritten digits as an mmpretrain classification dataset.

    The 1,797 samples are split once, deterministically and stratified by class, by
    :func:`stratified_split`. With the defaults (``test_fraction=0.25``, ``split_seed=0``) the
    ``'train'`` split has **1,347** images and the ``'test'`` split **450** (each of the 10 classes
    appears in both, in proportion to its frequency). The split depends only on ``split_seed``
    and ``test_fraction``; ``test_mode`` does not change it (pass ``split='test'`` for evaluation).

    **Harder variants.** ``distortion=dict(rotate=..., scale=..., shear=..., translate=...,
    elastic_alpha=..., elastic_sigma=..., noise_std=..., seed=...)`` gives every image one fixed
    random warp and noise (:func:`distort_digit`), drawn from ``(seed, index in the 1,797)``
    alone, so an image looks the same in every split, epoch and process; ``max_train`` keeps a
    stratified subset of the training images. Both make the task harder so that a small student
    falls clearly behind a larger teacher.

    **Tuning split.** Hyperparameters must not be chosen on the split that is reported. With
    ``tune_fraction > 0`` a stratified ``'tune'`` split of ``ceil(tune_fraction * 1347)`` images
    is carved out of the training images (seed ``split_seed + 1``) and ``'train'`` becomes the
    rest; ``'test'`` never changes. Choose settings by training on ``'train'`` and scoring on
    ``'tune'`` (both with the same ``tune_fraction``), then report the chosen setting trained
    with ``tune_fraction=0`` (all 1,347 images) and scored on ``'test'``. With
    ``tune_fraction=0.2``: 1,077 train / 270 tune / 450 test.

    **Larger images for zoo models.** ``img_size`` is the side of the images the pipeline and
    the model get. The digits are drawn and distorted at ``draw_size`` (default: ``img_size``)
    and then resized to ``img_size`` (bilinear when enlarging, :func:`resize_image`).
    ``draw_size=16, img_size=64`` gives the demo's very digits (its distortion is in pixels of
    a 16x16 image: elastic displacement and noise) four times larger, for ImageNet backbones
    of stride 32, which reduce a 16x16 image to nothing. In a config, one variable feeds
    ``img_size``, every size of the pipeline (``RandomCrop(crop_size=img_size,
    padding=img_size // 8)``) and the distiller's ``dry_run_input_shape``
    (``configs/demo/digits/zoo/_base_digits-64.py``); a crop of another size than
    ``img_size`` in the pipeline is logged as a warning at construction.

    Each data info is ``dict(img=..., gt_label=int, img_shape=(S, S), ori_shape=(S, S),
    sample_idx=...)`` where ``img`` is an ``(S, S, 3)`` uint8 BGR-like array (three identical
    channels, values 0..255, ``S = img_size``) already in memory, so pipelines start directly
    with transforms such as ``RandomFlip`` / ``RandomCrop`` / ``PackInputs`` (no
    ``LoadImageFromFile``). After ``PackInputs`` a sample's ``inputs`` is a ``(3, S, S)`` uint8
    tensor and its ``data_samples.gt_label`` a ``(1,)`` int64 tensor; batched by the
    classifier's data preprocessor this becomes ``(B, 3, S, S)`` float.

    Args:
        split (str): ``'train'``, ``'tune'`` (needs ``tune_fraction > 0``) or ``'test'``.
        test_fraction (float): fraction of the 1,797 samples held out for ``'test'``
            (rounded up). Defaults to 0.25.
        tune_fraction (float): fraction of the training images held out for ``'tune'``
            (rounded up), in [0, 1). Defaults to 0 (no tuning split; ``'train'`` is all of
            them).
        split_seed (int): seed of the stratified split. Defaults to 0.
        distortion (dict, optional): per-image affine/elastic warp and noise, keys
            :data:`DISTORTION_KEYS`. Defaults to None (the clean digits).
        max_train (int, optional): keep at most this many training images (a stratified
            subset, seed ``split_seed + 2``; ``'tune'`` and ``'test'`` are unchanged).
            Defaults to None (all).
        img_size (int): side of the square output images; the 8x8 scans are upsampled
            bilinearly. Defaults to 32 (CIFAR-sized, so CIFAR-style ResNets apply unchanged).
            The pipeline's crop sizes should read the same config variable.
        draw_size (int, optional): side at which the digits are drawn and distorted before
            being resized to ``img_size``. Defaults to None (``img_size``: drawn at the output
            size). ``draw_size=16`` with a larger ``img_size`` upscales the demo's digits.
        pipeline (Sequence): mmpretrain transforms, built with mmpretrain's registry.
        test_mode (bool): passed to :class:`mmpretrain.datasets.BaseDataset`.
        lazy_init (bool): passed through; defer building the data list.
        metainfo (dict, optional): overrides of :attr:`METAINFO`.
        **kwargs: any other :class:`mmpretrain.datasets.BaseDataset` argument (``indices``,
            ``serialize_data``, ``max_refetch``, ...). ``ann_file`` is ignored.

    Example:
        >>> ds = DigitsDataset(split='test', pipeline=[dict(type='PackInputs')])
        >>> len(ds), ds[0]['inputs'].shape
        (450, torch.Size([3, 32, 32]))
    """

    METAINFO = {'classes': DIGIT_CLASSES}
    NUM_SAMPLES = 1797
    SPLITS = ('train', 'tune', 'test')

    def __init__(self,
                 split: str = 'train',
                 test_fraction: float = 0.25,
                 tune_fraction: float = 0.0,
                 split_seed: int = 0,
                 distortion: Optional[dict] = None,
                 max_train: Optional[int] = None,
                 img_size: int = 32,
                 draw_size: Optional[int] = None,
                 pipeline: Sequence = (),
                 test_mode: bool = False,
                 lazy_init: bool = False,
                 metainfo: Optional[dict] = None,
                 **kwargs) -> None:
        if split not in self.SPLITS:
            raise ValueError(f'DigitsDataset split must be one of {list(self.SPLITS)}, got '
                             f'{split!r}')
        if not 0.0 <= tune_fraction < 1.0:
            raise ValueError(f'DigitsDataset tune_fraction must be in [0, 1), got '
                             f'{tune_fraction!r}')
        unknown = sorted(set(distortion or {}) - set(DISTORTION_KEYS))
        if unknown:
            raise ValueError(f'DigitsDataset distortion: unknown key(s) {unknown}; valid keys '
                             f'are {list(DISTORTION_KEYS)}')
        if max_train is not None and (not isinstance(max_train, int) or max_train < 10):
            raise ValueError(f'DigitsDataset max_train must be an int >= 10 (one image per '
                             f'class at least) or None, got {max_train!r}')
        if split == 'tune' and tune_fraction == 0:
            raise ValueError("DigitsDataset split='tune' needs tune_fraction > 0 (e.g. 0.2): "
                             'the tuning split is carved out of the training images')
        if not isinstance(img_size, int) or img_size < 1:
            raise ValueError(f'img_size must be a positive int, got {img_size!r}')
        if draw_size is not None and (not isinstance(draw_size, int) or draw_size < 1):
            raise ValueError(f'DigitsDataset draw_size must be a positive int or None (draw '
                             f'at img_size), got {draw_size!r}')
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f'test_fraction must be in (0, 1), got {test_fraction}')
        self.split = split
        self.test_fraction = float(test_fraction)
        self.tune_fraction = float(tune_fraction)
        self.distortion = dict(distortion) if distortion else None
        self.max_train = max_train
        self.split_seed = int(split_seed)
        self.img_size = img_size
        self.draw_size = draw_size
        check_pipeline_crops(pipeline, img_size)
        kwargs.pop('ann_file', None)  # nothing to read: the data comes from scikit-learn
        super().__init__(
            ann_file='',
            metainfo=metainfo,
            pipeline=pipeline,
            test_mode=test_mode,
            lazy_init=lazy_init,
            **kwargs)

    def split_indices(self) -> np.ndarray:
        """Indices into ``sklearn.datasets.load_digits()`` of this split, sorted ascending."""
        _, labels = _load_raw_digits()
        train_idx, test_idx = stratified_split(labels, self.test_fraction, self.split_seed)
        if self.split == 'test':
            return test_idx
        # Positions within the training images, stratified by class with its own seed, so the
        # tuning split never touches the test images and does not move when it is resized.
        if self.tune_fraction > 0:
            keep, tune = stratified_split(labels[train_idx], self.tune_fraction,
                                          self.split_seed + 1)
            if self.split == 'tune':
                return train_idx[tune]
            train_idx = train_idx[keep]
        if self.max_train is not None and self.max_train < len(train_idx):
            # The subset is the held-out side of a stratified split whose size rounds up to
            # exactly max_train (the half keeps float rounding from adding one).
            _, keep = stratified_split(labels[train_idx], (self.max_train - 0.5) / len(train_idx),
                                       self.split_seed + 2)
            train_idx = train_idx[keep]
        return train_idx

    def load_data_list(self) -> List[dict]:
        """Build the in-memory data list (one dict per image, see the class docstring)."""
        images, labels = _load_raw_digits()
        shape = (self.img_size, self.img_size)
        data_list = []
        distortion = dict(self.distortion or {})
        distortion_seed = int(distortion.pop('seed', 0))
        for source_idx in self.split_indices():
            img = digit_to_image(images[source_idx], self.draw_size or self.img_size)
            if distortion:
                rng = np.random.default_rng([distortion_seed, int(source_idx)])
                img = distort_digit(img, rng, **distortion)
            img = resize_image(img, self.img_size)
            data_list.append(
                dict(
                    img=img,
                    gt_label=int(labels[source_idx]),
                    img_shape=shape,
                    ori_shape=shape,
                    source_idx=int(source_idx),
                ))
        return data_list

    def extra_repr(self) -> List[str]:
        return [
            f'Split: {self.split} (test_fraction={self.test_fraction}, '
            f'tune_fraction={self.tune_fraction}, split_seed={self.split_seed})',
            f'Image size: {self.img_size}x{self.img_size}x3 uint8 (drawn at '
            f'{self.draw_size or self.img_size}x{self.draw_size or self.img_size})',
            f'Distortion: {self.distortion}, max_train: {self.max_train}',
            'Source: sklearn.datasets.load_digits (1,797 real 8x8 handwritten digits)',
        ]
