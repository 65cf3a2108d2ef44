"""A tiny synthetic "shapes" dataset for detection and semantic segmentation, plus its datasets.

:func:`make_shapes_dataset` draws small RGB images with one to four circles, squares and
triangles over a textured background and writes them once, with COCO box/polygon annotations and
single-channel label maps, so that detection (:class:`ShapesDetDataset`, mmdet) and segmentation
(:class:`ShapesSegDataset`, mmseg) distillation runs can be trained and evaluated on a CPU in
minutes, with no download. Layout under ``out_dir``::

    images/{train,val,tune}/000000.png            (S, S, 3) uint8 colour PNG
    seg_maps/{train,val,tune}/000000.png          (S, S) uint8 PNG: 0 bg, 1..3 the shape class
    annotations/instances_{train,val,tune}.json   COCO: bbox [x, y, w, h], polygon, area
    meta.json                                     generation parameters; written last

``val`` is the split the demo reports (as COCO and Cityscapes results are reported on val);
``tune`` is a third, disjoint split drawn the same way, on which demo hyperparameters are chosen,
so that no reported number comes from the split its settings were chosen on.

Only numpy and OpenCV are used to generate the data.
"""
import json
import os
import os.path as osp
from typing import Dict, List, Tuple

import cv2
import numpy as np
from mmdet.datasets import CocoDataset
from mmseg.datasets import BaseSegDataset

from mmkd.registry import DATASETS

from .generated import write_generated_dataset

SHAPE_CLASSES = ('circle', 'square', 'triangle')
#: Colours used to draw each class (RGB), for visualisers. Index 0 of the segmentation palette is
#: the background.
SHAPE_PALETTE = [(220, 20, 60), (0, 130, 200), (60, 180, 75)]
SEG_CLASSES = ('background', ) + SHAPE_CLASSES
SEG_PALETTE = [(0, 0, 0)] + SHAPE_PALETTE

# Bump whenever the drawing code changes, so that an existing dataset folder with an old
# meta.json is regenerated instead of silently reused.
_FORMAT_VERSION = 1
_SPLIT_IDS = {'train': 0, 'val': 1, 'tune': 2}
_MARGIN = 2  # minimum free pixels between the boxes of two shapes


def _shape_size_range(img_size: int) -> Tuple[int, int]:
    """Shape sizes in pixels: 10..28 for a 64 px image, scaled linearly with ``img_size``."""
    low = max(4, int(round(10 * img_size / 64)))
    high = max(low, int(round(28 * img_size / 64)))
    return low, high


def _textured_background(rng: np.random.Generator, size: int) -> Tuple[np.ndarray, np.ndarray]:
    """A ``(size, size, 3)`` float32 background and its mean colour ``(3,)``.

    A mid-range base colour plus three low-contrast components, each with random parameters: a
    linear gradient, oriented sinusoidal stripes and per-pixel Gaussian noise. This keeps the
    background from being flat (a detector cannot just threshold it) while shapes, drawn in a
    colour far from the base, stay clearly visible.
    """
    base = rng.uniform(50, 205, size=3)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * xs + np.sin(angle) * ys) - 0.5  # in about [-0.7, 0.7]
    gradient = ramp[:, :, None] * rng.uniform(-40, 40, size=3)
    stripe_angle = rng.uniform(0, np.pi)
    period = rng.uniform(0.1, 0.4)  # in image widths: 6..26 px on a 64 px image
    phase = rng.uniform(0, 2 * np.pi)
    wave = np.sin(2 * np.pi * (np.cos(stripe_angle) * xs + np.sin(stripe_angle) * ys) / period +
                  phase)
    stripes = wave[:, :, None] * rng.uniform(4, 18, size=3)
    noise = rng.normal(0, rng.uniform(2, 7), size=(size, size, 3))
    return (base + gradient + stripes + noise).astype(np.float32), base


def _shape_colour(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    """A random colour at least 60 grey levels (mean over channels) away from ``background``."""
    colour = rng.uniform(0, 255, size=3)
    for _ in range(50):
        if np.abs(colour - background).mean() >= 60:
            break
        colour = rng.uniform(0, 255, size=3)
    else:  # fall back to the complement, which is always far enough from a mid-range base
        colour = 255 - background
    return colour


def _draw_shape(rng: np.random.Generator, cls_idx: int, size: int) -> np.ndarray:
    """Rasterise one shape of about ``size`` px; return its tight ``(h, w)`` bool mask.

    * circle: filled disc of diameter ``size``;
    * square: axis-aligned, side ``size`` (axis-aligned so that it is easy to tell from a
      rotated triangle even at 10 px);
    * triangle: equilateral, side ``size``, rotated by a random angle.

    Drawn without anti-aliasing, so the label map and the image agree pixel for pixel.
    """
    canvas_size = 2 * size + 4
    canvas = np.zeros((canvas_size, canvas_size), dtype=np.uint8)
    centre = canvas_size // 2
    if cls_idx == 0:
        # Pixels whose centres lie within the circle of diameter `size`; cv2.circle would leave
        # one-pixel spurs at the four cardinal points.
        coords = np.arange(size) + 0.5 - size / 2
        disc = coords[:, None]**2 + coords[None, :]**2 <= (size / 2)**2
        top_left = centre - size // 2
        canvas[top_left:top_left + size, top_left:top_left + size] = disc
    elif cls_idx == 1:
        top_left = centre - size // 2
        cv2.rectangle(canvas, (top_left, top_left), (top_left + size - 1, top_left + size - 1), 1,
                      thickness=-1, lineType=cv2.LINE_8)
    else:
        radius = size / np.sqrt(3.0)  # circumradius of an equilateral triangle of side `size`
        angles = rng.uniform(0, 2 * np.pi) + np.array([0, 2 * np.pi / 3, 4 * np.pi / 3])
        points = np.stack([centre + radius * np.cos(angles), centre + radius * np.sin(angles)], 1)
        cv2.fillPoly(canvas, [np.rint(points).astype(np.int32)], 1, lineType=cv2.LINE_8)
    ys, xs = np.nonzero(canvas)
    return canvas[ys.min():ys.max() + 1, xs.min():xs.max() + 1].astype(bool)


def _mask_polygon(mask: np.ndarray, x0: int, y0: int) -> List[float]:
    """COCO polygon ``[x1, y1, x2, y2, ...]`` of the outer contour of a tight ``(h, w)`` mask
    placed at ``(x0, y0)``. Vertices are pixel centres (``+0.5``, COCO's pixel-edge coordinates,
    where the box ``[x0, y0, w, h]`` spans pixels ``x0 .. x0 + w - 1``)."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    contour = max(contours, key=len).reshape(-1, 2).astype(np.float64)
    contour += np.array([x0 + 0.5, y0 + 0.5])
    if len(contour) < 3:  # degenerate (never for sizes >= 4): use the box corners instead
        h, w = mask.shape
        contour = np.array([[x0, y0], [x0 + w, y0], [x0 + w, y0 + h], [x0, y0 + h]], float)
    return [round(float(v), 2) for v in contour.reshape(-1)]


def _generate_image(seed: int, split: str, index: int,
                    img_size: int) -> Tuple[np.ndarray, np.ndarray, List[dict]]:
    """Draw one sample.

    Every image has its own generator seeded by ``(seed, split, index)``, so an image does not
    change when the number of images of either split changes.

    Returns:
        tuple: ``(image, label_map, objects)``: ``image`` (S, S, 3) uint8 (written as-is by
        ``cv2.imwrite``, i.e. BGR order); ``label_map`` (S, S) uint8 in {0, 1, 2, 3};
        ``objects`` a list of ``dict(category_id, bbox=[x, y, w, h], area, segmentation)``.
    """
    rng = np.random.default_rng([seed, _SPLIT_IDS[split], index])
    image, base = _textured_background(rng, img_size)
    label_map = np.zeros((img_size, img_size), dtype=np.uint8)
    low, high = _shape_size_range(img_size)
    boxes: List[Tuple[int, int, int, int]] = []  # x1, y1, x2, y2 (exclusive)
    objects = []
    for _ in range(int(rng.integers(1, 5))):
        cls_idx = int(rng.integers(0, len(SHAPE_CLASSES)))
        mask = _draw_shape(rng, cls_idx, int(rng.integers(low, high + 1)))
        h, w = mask.shape
        for _attempt in range(100):  # rejection sampling of a free position
            x0 = int(rng.integers(0, img_size - w + 1))
            y0 = int(rng.integers(0, img_size - h + 1))
            if all(x0 + w + _MARGIN <= bx1 or bx2 + _MARGIN <= x0 or y0 + h + _MARGIN <= by1
                   or by2 + _MARGIN <= y0 for bx1, by1, bx2, by2 in boxes):
                break
        else:
            continue  # the image is too crowded for this shape: leave it out
        boxes.append((x0, y0, x0 + w, y0 + h))
        image[y0:y0 + h, x0:x0 + w][mask] = _shape_colour(rng, base)
        label_map[y0:y0 + h, x0:x0 + w][mask] = cls_idx + 1
        objects.append(
            dict(
                category_id=cls_idx + 1,
                bbox=[x0, y0, w, h],
                area=float(mask.sum()),
                segmentation=[_mask_polygon(mask, x0, y0)]))
    # Light sensor-like noise over everything, shapes included, so they are not flat either.
    image += rng.normal(0, 3, size=image.shape)
    image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    return image, label_map, objects


def _write_split(root: str, split: str, num: int, img_size: int, seed: int) -> int:
    """Write one split's images, label maps and COCO json under ``root``; return #instances."""
    img_dir = osp.join(root, 'images', split)
    seg_dir = osp.join(root, 'seg_maps', split)
    os.makedirs(img_dir)
    os.makedirs(seg_dir)
    images, annotations = [], []
    for index in range(num):
        image, label_map, objects = _generate_image(seed, split, index, img_size)
        file_name = f'{index:06d}.png'
        if not (cv2.imwrite(osp.join(img_dir, file_name), image)
                and cv2.imwrite(osp.join(seg_dir, file_name), label_map)):
            raise OSError(f'cv2.imwrite failed for {split}/{file_name}')
        image_id = index + 1  # COCO ids start at 1 (0 is falsy in some tools)
        images.append(dict(id=image_id, file_name=file_name, width=img_size, height=img_size))
        for obj in objects:
            annotations.append(dict(id=len(annotations) + 1, image_id=image_id, iscrowd=0, **obj))
    coco = dict(
        info=dict(description=f'mmkd synthetic shapes ({split})', version=str(_FORMAT_VERSION)),
        licenses=[],
        images=images,
        annotations=annotations,
        categories=[
            dict(id=i + 1, name=name, supercategory='shape')
            for i, name in enumerate(SHAPE_CLASSES)
        ])
    with open(osp.join(root, 'annotations', f'instances_{split}.json'), 'w') as f:
        json.dump(coco, f)
    return len(annotations)


def _summary(root: str, meta: dict, generated: bool) -> Dict:
    paths = {}
    for split in _SPLIT_IDS:
        paths[f'{split}_img_dir'] = osp.join(root, 'images', split)
        paths[f'{split}_seg_dir'] = osp.join(root, 'seg_maps', split)
        paths[f'{split}_ann_file'] = osp.join(root, 'annotations', f'instances_{split}.json')
    return dict(
        root=root,
        **paths,
        num_train=meta['params']['num_train'],
        num_val=meta['params']['num_val'],
        num_tune=meta['params']['num_tune'],
        num_train_instances=meta['num_instances']['train'],
        num_val_instances=meta['num_instances']['val'],
        num_tune_instances=meta['num_instances']['tune'],
        img_size=meta['params']['img_size'],
        seed=meta['params']['seed'],
        classes=SHAPE_CLASSES,
        generated=generated)


def make_shapes_dataset(out_dir: str,
                        num_train: int = 300,
                        num_val: int = 100,
                        num_tune: int = 100,
                        img_size: int = 64,
                        seed: int = 0,
                        overwrite: bool = False) -> Dict:
    """Write the synthetic shapes dataset to ``out_dir`` (or reuse it) and describe it.

    Each image is ``img_size x img_size`` RGB with 1 to 4 non-overlapping shapes (circle, square,
    triangle; about 10..28 px on 64 px images, scaled with ``img_size``) in random colours and
    positions over a textured background (gradient + stripes + noise). Shapes never overlap and
    their boxes keep a 2 px gap, so every COCO box is the tight box of exactly the label-map
    pixels of its shape. A shape that cannot be placed after 100 tries is left out (rare).

    Everything is a pure function of ``(seed, split, index, img_size)``: the same arguments give
    byte-identical files (with the same OpenCV PNG encoder).

    Idempotent and crash-safe: the data is written to a hidden temporary folder next to
    ``out_dir``, ``meta.json`` (the parameters) is written last, and the folder is then renamed
    to ``out_dir``. A later call whose parameters match ``out_dir/meta.json`` returns at once
    without writing anything (``generated=False``); a folder with other parameters (or any folder
    with ``overwrite=True``) is replaced. A non-empty folder without ``meta.json`` is not
    ours and raises :class:`FileExistsError` unless ``overwrite=True``.

    Args:
        out_dir (str): dataset root.
        num_train (int): number of training images. Defaults to 300.
        num_val (int): number of validation images (the reported split). Defaults to 100.
        num_tune (int): number of images of the hyperparameter-tuning split. Defaults to 100.
            Images of every split are a pure function of ``(seed, split, index)``, so adding
            this split left the train and val images unchanged.
        img_size (int): image side in pixels (>= 16). Defaults to 64.
        seed (int): generation seed. Defaults to 0.
        overwrite (bool): regenerate even if a matching dataset exists. Defaults to False.

    Returns:
        dict: ``root``, ``{train,val,tune}_img_dir``, ``{train,val,tune}_seg_dir``,
        ``{train,val,tune}_ann_file`` (absolute paths), ``num_{train,val,tune}``,
        ``num_{train,val,tune}_instances``, ``img_size``, ``seed``, ``classes`` and
        ``generated`` (False when an existing dataset was reused).
    """
    if img_size < 16:
        raise ValueError(f'img_size must be >= 16, got {img_size}')
    if min(num_train, num_val, num_tune) < 0:
        raise ValueError(f'num_train, num_val and num_tune must be >= 0, got {num_train}, '
                         f'{num_val}, {num_tune}')
    params = dict(
        format_version=_FORMAT_VERSION,
        num_train=int(num_train),
        num_val=int(num_val),
        num_tune=int(num_tune),
        img_size=int(img_size),
        seed=int(seed))

    def write(tmp):
        os.makedirs(osp.join(tmp, 'annotations'))
        counts = {split: _write_split(tmp, split, params[f'num_{split}'], img_size, seed)
                  for split in ('train', 'val', 'tune')}
        return dict(num_instances=counts, classes=list(SHAPE_CLASSES))

    root, meta, generated = write_generated_dataset(out_dir, params, write, overwrite,
                                                    'shapes dataset')
    return _summary(root, meta, generated)


@DATASETS.register_module()
class ShapesDetDataset(CocoDataset):
    """Object detection on the synthetic shapes data (COCO format, 3 classes).

    A :class:`mmdet.datasets.CocoDataset` with shapes' classes and palette, so every mmdet
    transform and ``CocoMetric`` (``ann_file`` = the val json) apply unchanged. After mmdet's
    ``LoadImageFromFile`` / ``LoadAnnotations(with_bbox=True)`` / ``PackDetInputs``, a sample has
    ``inputs`` ``(3, H, W)`` uint8 and ``data_samples.gt_instances.bboxes`` ``(N, 4)`` float
    ``(x1, y1, x2, y2)`` with ``labels`` ``(N,)`` in {0: circle, 1: square, 2: triangle}.

    Example config (under ``default_scope='mmdet'``)::

        dataset=dict(type='mmkd.ShapesDetDataset', data_root='data/shapes',
                     ann_file='annotations/instances_train.json',
                     data_prefix=dict(img='images/train/'), pipeline=[...])
    """

    METAINFO = {'classes': SHAPE_CLASSES, 'palette': SHAPE_PALETTE}


@DATASETS.register_module()
class ShapesSegDataset(BaseSegDataset):
    """Semantic segmentation on the synthetic shapes data (4 classes, background included).

    Images and label maps are matched by file name (``images/<split>/NNNNNN.png`` and
    ``seg_maps/<split>/NNNNNN.png``). Label value 0 is a real class (background), hence
    ``reduce_zero_label=False``. After mmseg's ``LoadImageFromFile`` / ``LoadAnnotations`` /
    ``PackSegInputs`` a sample has ``inputs`` ``(3, H, W)`` uint8 and
    ``data_samples.gt_sem_seg.data`` ``(1, H, W)`` int64 in {0, 1, 2, 3}; ``IoUMetric`` reports
    per-class IoU for the four classes.

    Example config (under ``default_scope='mmseg'``)::

        dataset=dict(type='mmkd.ShapesSegDataset', data_root='data/shapes',
                     data_prefix=dict(img_path='images/train', seg_map_path='seg_maps/train'),
                     pipeline=[...])
    """

    METAINFO = {'classes': SEG_CLASSES, 'palette': SEG_PALETTE}

    def __init__(self,
                 img_suffix: str = '.png',
                 seg_map_suffix: str = '.png',
                 reduce_zero_label: bool = False,
                 **kwargs) -> None:
        super().__init__(
            img_suffix=img_suffix,
            seg_map_suffix=seg_map_suffix,
            reduce_zero_label=reduce_zero_label,
            **kwargs)
