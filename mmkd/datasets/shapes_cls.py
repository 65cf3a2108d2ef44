"""Shapes classification: the "ImageNet" of the shapes demo, for pretraining its backbones.

Real detection and segmentation distillation starts from backbones pretrained on a large
classification set (ImageNet); the shapes demo trained everything from scratch. The
pretrained-backbone variant of the shapes demo (``configs/demo/shapes_pretrain``,
``configs/demo/shapes_det_pt``, ``configs/demo/shapes_seg_pt``) first pretrains each tiny
backbone on this object-centric classification task: every image holds exactly one shape,
drawn by the very code of :mod:`mmkd.datasets.shapes` (textured background, the dense
data's shape sizes, 10..28 px, on a 32 px crop, random colour far from the background,
sensor noise), and its label is the shape's class (``circle``, ``square``, ``triangle``).

Disjoint from the dense data: the dense images are drawn from generators seeded
``[seed=0, split in {0, 1, 2}, index]`` (:func:`mmkd.datasets.shapes._generate_image`); these
from ``[seed, 10 + split in {0, 1}, index]`` with ``seed=1`` by default, independent streams of
numpy's ``SeedSequence`` (and single-shape images, which the dense generator draws only by
chance, at other positions and colours). No image of the dense train, val or tune splits is
seen by the pretraining, as ImageNet pretraining never sees COCO's val images.

The images live in memory (no files; 1,500 + 300 crops of 32 x 32 take about a second to
draw), so the dataset needs no preparation step.
"""
from typing import List, Sequence

import numpy as np
from mmpretrain.datasets import BaseDataset

from mmkd.registry import DATASETS

from .shapes import (SHAPE_CLASSES, _draw_shape, _shape_colour, _shape_size_range,
                     _textured_background)

#: Split ids of the generator streams; 10 + id keeps them apart from the dense splits' 0..2.
_CLS_SPLIT_IDS = {'train': 0, 'val': 1}
_STREAM_OFFSET = 10


def generate_shape_crop(seed: int, split: str, index: int, img_size: int = 32):
    """One classification sample: ``(image, label)``.

    ``image``: ``(S, S, 3)`` uint8, in the channel order :func:`mmkd.datasets.shapes` writes
    its PNGs in (read back unchanged by ``LoadImageFromFile``, i.e. BGR for the
    ``bgr_to_rgb=True`` preprocessors of the dense configs). One shape of class
    ``label = index % 3`` (balanced classes), of the dense data's sizes (10..28 px,
    :func:`~mmkd.datasets.shapes._shape_size_range` of 64), at a uniformly random position (fully
    inside), over :func:`~mmkd.datasets.shapes._textured_background`, plus the dense data's
    N(0, 3) noise. A pure function of its arguments (a generator seeded
    ``[seed, 10 + split id, index]``).
    """
    if split not in _CLS_SPLIT_IDS:
        raise ValueError(f'split must be one of {list(_CLS_SPLIT_IDS)}, got {split!r}')
    rng = np.random.default_rng([int(seed), _STREAM_OFFSET + _CLS_SPLIT_IDS[split], int(index)])
    image, base = _textured_background(rng, img_size)
    label = int(index) % len(SHAPE_CLASSES)
    # The dense data's shape sizes (64 px images), whatever the crop size: the backbone
    # learns the shapes at the scale it meets them in the dense tasks.
    low, high = _shape_size_range(64)
    mask = _draw_shape(rng, label, int(rng.integers(low, high + 1)))
    h, w = mask.shape
    x0 = int(rng.integers(0, img_size - w + 1))
    y0 = int(rng.integers(0, img_size - h + 1))
    image[y0:y0 + h, x0:x0 + w][mask] = _shape_colour(rng, base)
    image += rng.normal(0, 3, size=image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), label


@DATASETS.register_module()
class ShapesClsDataset(BaseDataset):
    """Single-shape images labelled by the shape's class, an mmpretrain dataset in memory.

    Each data info is ``dict(img=(S, S, 3) uint8, gt_label=int in {0, 1, 2}, img_shape,
    ori_shape, sample_idx)``; pipelines start with transforms such as ``RandomFlip`` and
    ``PackInputs`` (no ``LoadImageFromFile``). See the module docstring for how the images are
    drawn and why they never coincide with the dense shapes data.

    Args:
        split (str): ``'train'`` or ``'val'`` (independent generator streams).
        num_samples (int, optional): number of images. Defaults to None: 1,500 for
            ``'train'`` (500 per class: ~1.5 epochs of the pretraining schedules) and 300 for
            ``'val'`` (100 per class: accuracy in steps of 0.33 %).
        img_size (int): image side (>= 32). Defaults to 32: object-centric crops (as
            ImageNet's images are), the shape filling much of the image at the size it has in
            the dense 64 px images; 4x cheaper per image than 64 px.
        seed (int): generation seed. Defaults to 1 (the dense data uses 0; any value gives
            streams apart from the dense data's by the split ids' offset).
        pipeline, test_mode, lazy_init, metainfo, **kwargs: as for
            :class:`mmpretrain.datasets.BaseDataset` (``ann_file`` is ignored).
    """

    METAINFO = {'classes': SHAPE_CLASSES}
    DEFAULT_SIZES = {'train': 1500, 'val': 300}

    def __init__(self,
                 split: str = 'train',
                 num_samples=None,
                 img_size: int = 32,
                 seed: int = 1,
                 pipeline: Sequence = (),
                 test_mode: bool = False,
                 lazy_init: bool = False,
                 metainfo=None,
                 **kwargs) -> None:
        if split not in _CLS_SPLIT_IDS:
            raise ValueError(f'ShapesClsDataset split must be one of {list(_CLS_SPLIT_IDS)}, '
                             f'got {split!r}')
        if num_samples is None:
            num_samples = self.DEFAULT_SIZES[split]
        if not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f'ShapesClsDataset num_samples must be a positive int, got '
                             f'{num_samples!r}')
        if not isinstance(img_size, int) or img_size < 32:
            raise ValueError(f'ShapesClsDataset img_size must be an int >= 32 (the largest '
                             f'shapes are 28 px), got {img_size!r}')
        self.split = split
        self.num_samples = num_samples
        self.img_size = img_size
        self.seed = int(seed)
        kwargs.pop('ann_file', None)  # nothing to read: the images are drawn in memory
        super().__init__(ann_file='', metainfo=metainfo, pipeline=pipeline,
                         test_mode=test_mode, lazy_init=lazy_init, **kwargs)

    def load_data_list(self) -> List[dict]:
        shape = (self.img_size, self.img_size)
        data_list = []
        for index in range(self.num_samples):
            img, label = generate_shape_crop(self.seed, self.split, index, self.img_size)
            data_list.append(dict(img=img, gt_label=label, img_shape=shape, ori_shape=shape))
        return data_list

    def extra_repr(self) -> List[str]:
        return [f'Split: {self.split} ({self.num_samples} images, seed {self.seed})',
                f'Image size: {self.img_size}x{self.img_size}x3 uint8, one shape each']
