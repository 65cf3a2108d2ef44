"""A small, real, offline image-classification dataset: scikit-learn's handwritten digits.

``sklearn.datasets.load_digits`` ships 1,797 real 8x8 grey-level scans of handwritten digits
(UCI "optdigits", values 0..16, classes 0..9, about 180 per class) inside the scikit-learn wheel,
so this dataset needs no download and writes no files. That makes it the classification
counterpart of the synthetic shapes data in :mod:`mmkd.datasets.shapes`: big enough for a
teacher to beat a student by a measurable margin, small enough to train on a CPU in minutes.
"""
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np
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


@DATASETS.register_module()
class DigitsDataset(BaseDataset):
    """scikit-learn's real handwritten digits as an mmpretrain classification dataset.

    The 1,797 samples are split once, deterministically and stratified by class, by
    :func:`stratified_split`. With the defaults (``test_fraction=0.25``, ``split_seed=0``) the
    ``'train'`` split has **1,347** images and the ``'test'`` split **450** (each of the 10 classes
    appears in both, in proportion to its frequency). The split depends only on ``split_seed``
    and ``test_fraction``; ``test_mode`` does not change it (pass ``split='test'`` for evaluation).

    Each data info is ``dict(img=..., gt_label=int, img_shape=(S, S), ori_shape=(S, S),
    sample_idx=...)`` where ``img`` is an ``(S, S, 3)`` uint8 BGR-like array (three identical
    channels, values 0..255, ``S = img_size``) already in memory, so pipelines start directly
    with transforms such as ``RandomFlip`` / ``RandomCrop`` / ``PackInputs`` (no
    ``LoadImageFromFile``). After ``PackInputs`` a sample's ``inputs`` is a ``(3, S, S)`` uint8
    tensor and its ``data_samples.gt_label`` a ``(1,)`` int64 tensor; batched by the
    classifier's data preprocessor this becomes ``(B, 3, S, S)`` float.

    Args:
        split (str): ``'train'`` or ``'test'``.
        test_fraction (float): fraction of the 1,797 samples held out for ``'test'``
            (rounded up). Defaults to 0.25.
        split_seed (int): seed of the stratified split. Defaults to 0.
        img_size (int): side of the square output images; the 8x8 scans are upsampled
            bilinearly. Defaults to 32 (CIFAR-sized, so CIFAR-style ResNets apply unchanged).
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

    def __init__(self,
                 split: str = 'train',
                 test_fraction: float = 0.25,
                 split_seed: int = 0,
                 img_size: int = 32,
                 pipeline: Sequence = (),
                 test_mode: bool = False,
                 lazy_init: bool = False,
                 metainfo: Optional[dict] = None,
                 **kwargs) -> None:
        if split not in ('train', 'test'):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        if not isinstance(img_size, int) or img_size < 1:
            raise ValueError(f'img_size must be a positive int, got {img_size!r}')
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f'test_fraction must be in (0, 1), got {test_fraction}')
        self.split = split
        self.test_fraction = float(test_fraction)
        self.split_seed = int(split_seed)
        self.img_size = img_size
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
        return train_idx if self.split == 'train' else test_idx

    def load_data_list(self) -> List[dict]:
        """Build the in-memory data list (one dict per image, see the class docstring)."""
        images, labels = _load_raw_digits()
        shape = (self.img_size, self.img_size)
        data_list = []
        for source_idx in self.split_indices():
            data_list.append(
                dict(
                    img=digit_to_image(images[source_idx], self.img_size),
                    gt_label=int(labels[source_idx]),
                    img_shape=shape,
                    ori_shape=shape,
                    source_idx=int(source_idx),
                ))
        return data_list

    def extra_repr(self) -> List[str]:
        return [
            f'Split: {self.split} (test_fraction={self.test_fraction}, '
            f'split_seed={self.split_seed})',
            f'Image size: {self.img_size}x{self.img_size}x3 uint8',
            'Source: sklearn.datasets.load_digits (1,797 real 8x8 handwritten digits)',
        ]
