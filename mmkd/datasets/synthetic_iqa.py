"""A real-image IQA demo set from the photographs bundled in scikit-image (KADID-style).

scikit-image's wheel ships a few natural photographs (``skimage.data``); no download is needed.
:func:`make_synthetic_iqa` cuts each of :data:`PHOTOS` (15 photographs) into G x G pristine
crops (``crops_per_side`` G: the photo resized so its shorter side is G x ``crop_size``, then the
centred ``crop_size`` square of each cell of a G x G grid), and degrades every crop with each of
:data:`DISTORTIONS` at 5 levels, KADID-10k's design in miniature. G = 2 (the default): 15 x 4 =
60 references, 60 x 6 x 5 = 1,800 distorted images; G = 4: 240 references, 7,200 images, each
crop a sixteenth of its photo at twice the resolution (more content per photo to learn quality
across; the IQA demo configs use it, docs/benchmarks.md "RKIQT").

**The label is synthetic, not human opinion**, and one of two (``SyntheticIQADataset(label=)``):

- ``'ssim'``: SSIM (Wang et al., IEEE TIP 2004; ``skimage.metrics.structural_similarity``,
  Gaussian window sigma 1.5, on the luminance, data range 255) of each distorted image against
  its pristine crop: a published full-reference metric. It depends on the content (blur costs
  a flat sky nothing), which a model must learn from the 12 training photos.
- ``'level'``: the distortion level as quality, ``(5 - level) / 4`` (1 for the mildest of the
  five levels, 0 for the strongest), the same for every content; the KADID-style design's own
  ground truth. The IQA demo configs use it: on the tune split no demo model learned SSIM
  across photos, while the level is learned (docs/benchmarks.md, "RKIQT").

Layout under ``out_dir`` (written once, atomically, by :mod:`mmkd.datasets.generated`)::

    images/<photo>_<crop>.png                  (S, S, 3) uint8 pristine crops
    images/<photo>_<crop>_<dist>_<level>.png   distorted images
    scores.csv      dist_img, ref_img, content (the photo), distortion, level, ssim
    meta.json       generation parameters; written last

Splits (:class:`SyntheticIQADataset`) are by **photo**, so no content - not even another crop
of the same photograph - crosses train / tune / test. Everything is a pure function of
``(seed, crop_size, crops_per_side)`` and the scikit-image photographs; generation takes
seconds (about 20 for G = 4).
"""
import csv
import os
import os.path as osp
from typing import Dict, List

import cv2
import numpy as np

from mmkd.registry import DATASETS

from .generated import write_generated_dataset
from .iqa import IQADataset

_FORMAT_VERSION = 1
#: skimage.data functions of natural photographs (grey ones are repeated to 3 channels).
PHOTOS = ('astronaut', 'camera', 'chelsea', 'coffee', 'rocket', 'stereo_motorcycle',
          'hubble_deep_field', 'retina', 'immunohistochemistry', 'coins', 'moon', 'page', 'brick',
          'grass', 'gravel')
#: distortion -> its parameter at levels 1..5 (for a 64-pixel crop; blur and pixelation scale
#: with crop_size / 64).
DISTORTIONS = {
    'gblur': (0.6, 1.0, 1.6, 2.5, 4.0),          # Gaussian blur, sigma in pixels
    'wn': (5.0, 10.0, 18.0, 30.0, 48.0),         # white Gaussian noise, std in grey levels
    'jpeg': (50, 30, 18, 10, 5),                 # JPEG quality (OpenCV's encoder)
    'contrast': (0.75, 0.55, 0.4, 0.28, 0.18),   # contrast factor about the mean
    'pixelate': (2, 3, 4, 6, 8),                 # down-sampling factor, nearest up-sampling
    'impulse': (0.01, 0.03, 0.06, 0.1, 0.16),    # salt-and-pepper fraction of pixels
}


def _photo(name: str) -> np.ndarray:
    """(H, W, 3) uint8 BGR of one scikit-image photograph."""
    import skimage.data
    img = getattr(skimage.data, name)()
    if name == 'stereo_motorcycle':
        img = img[0]  # (left, right, disparity): the left view
    img = np.asarray(img)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    return np.ascontiguousarray(cv2.cvtColor(img[:, :, :3].astype(np.uint8), cv2.COLOR_RGB2BGR))


def pristine_crops(name: str, crop_size: int, crops_per_side: int = 2) -> List[np.ndarray]:
    """The G x G (S, S, 3) crops of one photograph, row by row (module docstring)."""
    img = _photo(name)
    h, w = img.shape[:2]
    g = crops_per_side
    scale = g * crop_size / min(h, w)
    img = cv2.resize(img, (max(g * crop_size, round(w * scale)),
                           max(g * crop_size, round(h * scale))), interpolation=cv2.INTER_AREA)
    h, w = img.shape[:2]
    crops = []
    for qy in range(g):
        for qx in range(g):
            cy = (2 * qy + 1) * h // (2 * g)
            cx = (2 * qx + 1) * w // (2 * g)
            y0 = min(max(cy - crop_size // 2, 0), h - crop_size)
            x0 = min(max(cx - crop_size // 2, 0), w - crop_size)
            crops.append(img[y0:y0 + crop_size, x0:x0 + crop_size].copy())
    return crops


def distort(img: np.ndarray, distortion: str, level: int, rng: np.random.Generator
            ) -> np.ndarray:
    """One (S, S, 3) uint8 image degraded by ``distortion`` at ``level`` (1..5)."""
    if distortion not in DISTORTIONS or not 1 <= level <= 5:
        raise ValueError(f'distort: {distortion!r} level {level}; distortions '
                         f'{list(DISTORTIONS)}, levels 1..5')
    p = DISTORTIONS[distortion][level - 1]
    x = img.astype(np.float32)
    size = img.shape[0] / 64.0
    if distortion == 'gblur':
        x = cv2.GaussianBlur(x, (0, 0), p * size)
    elif distortion == 'wn':
        x = x + rng.normal(0.0, p, size=x.shape).astype(np.float32)
    elif distortion == 'jpeg':
        ok, buf = cv2.imencode('.jpg', img, [cv2.IMWRITE_JPEG_QUALITY, int(p)])
        return cv2.imdecode(buf, cv2.IMREAD_COLOR)
    elif distortion == 'contrast':
        x = (x - x.mean()) * p + x.mean()
    elif distortion == 'pixelate':
        s = img.shape[0]
        small = max(1, int(round(s / p)))
        x = cv2.resize(cv2.resize(x, (small, small), interpolation=cv2.INTER_AREA), (s, s),
                       interpolation=cv2.INTER_NEAREST)
    elif distortion == 'impulse':
        hit = rng.random(x.shape[:2]) < p
        salt = rng.random(x.shape[:2]) < 0.5
        x[hit & salt] = 255.0
        x[hit & ~salt] = 0.0
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two BGR uint8 images on their luminance (Wang et al. 2004's settings)."""
    from skimage.metrics import structural_similarity
    ga = cv2.cvtColor(a, cv2.COLOR_BGR2GRAY).astype(np.float64)
    gb = cv2.cvtColor(b, cv2.COLOR_BGR2GRAY).astype(np.float64)
    return float(structural_similarity(ga, gb, data_range=255.0, gaussian_weights=True,
                                       sigma=1.5, use_sample_covariance=False))


def make_synthetic_iqa(out_dir: str, crop_size: int = 64, seed: int = 0,
                       overwrite: bool = False, crops_per_side: int = 2) -> Dict:
    """Write the set to ``out_dir`` (or reuse it; see :mod:`mmkd.datasets.generated`).
    Returns dict(root, csv, num_references, num_images, generated)."""
    if crop_size < 16:
        raise ValueError(f'make_synthetic_iqa: crop_size must be >= 16, got {crop_size}')
    if not isinstance(crops_per_side, int) or crops_per_side < 1:
        raise ValueError(f'make_synthetic_iqa: crops_per_side must be an int >= 1, got '
                         f'{crops_per_side!r}')
    params = dict(format_version=_FORMAT_VERSION, crop_size=int(crop_size), seed=int(seed),
                  photos=list(PHOTOS), distortions={k: list(v) for k, v in DISTORTIONS.items()})
    if crops_per_side != 2:  # keeps the parameters (and so the folders) of the 2 x 2 sets
        params['crops_per_side'] = crops_per_side

    def write(tmp):
        os.makedirs(osp.join(tmp, 'images'))
        rows = []
        for p_idx, photo in enumerate(PHOTOS):
            for c_idx, crop in enumerate(pristine_crops(photo, crop_size, crops_per_side)):
                ref = f'{photo}_{c_idx}.png'
                cv2.imwrite(osp.join(tmp, 'images', ref), crop)
                for d_idx, dist in enumerate(DISTORTIONS):
                    for level in range(1, 6):
                        rng = np.random.default_rng([seed, p_idx, c_idx, d_idx, level])
                        img = distort(crop, dist, level, rng)
                        name = f'{photo}_{c_idx}_{dist}_{level}.png'
                        cv2.imwrite(osp.join(tmp, 'images', name), img)
                        rows.append(dict(dist_img=name, ref_img=ref, content=photo,
                                         distortion=dist, level=level,
                                         ssim=f'{ssim(img, crop):.6f}'))
        with open(osp.join(tmp, 'scores.csv'), 'w', newline='') as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        return dict(num_references=len(PHOTOS) * crops_per_side ** 2, num_images=len(rows))

    root, meta, generated = write_generated_dataset(out_dir, params, write, overwrite,
                                                    'synthetic IQA set')
    return dict(root=root, csv=osp.join(root, 'scores.csv'),
                num_references=meta['num_references'], num_images=meta['num_images'],
                generated=generated)


@DATASETS.register_module()
class SyntheticIQADataset(IQADataset):
    """The scikit-image set of :func:`make_synthetic_iqa` (generated into ``data_root`` on first
    use when ``generate=True``, the default; seconds). Split by photograph: with the default
    ``test_fraction=0.2``, 3 of the 15 photos (360 images at G = 2, 1,440 at G = 4) are 'test'.

    Args:
        data_root (str): the set's folder.
        label (str): 'ssim' (default; quality = SSIM, range (0, 1)) or 'level' (quality =
            (5 - level) / 4: 1 for the mildest level, 0 for the strongest).
        generate (bool): make the set if ``data_root`` has none. Default True.
        crop_size (int): of the generated set. Default 64.
        crops_per_side (int): of the generated set (G x G crops per photo). Default 2.
        **kwargs: :class:`~mmkd.datasets.iqa.IQADataset`'s (split, split_seed, ...).
    """
    SCORE_RANGE = (0.0, 1.0)
    LABELS = ('ssim', 'level')

    def __init__(self, data_root: str, label: str = 'ssim', generate: bool = True,
                 crop_size: int = 64, crops_per_side: int = 2, **kwargs):
        if label not in self.LABELS:
            raise ValueError(f'SyntheticIQADataset label must be one of {self.LABELS}, got '
                             f'{label!r}')
        self.label, self.generate, self.crop_size = label, generate, crop_size
        self.crops_per_side = crops_per_side
        super().__init__(data_root, **kwargs)

    def read_records(self) -> List[dict]:
        if self.generate:
            make_synthetic_iqa(self.data_root, crop_size=self.crop_size,
                               crops_per_side=self.crops_per_side)
        with open(self._path('scores.csv'), newline='') as f:
            rows = list(csv.DictReader(f))
        folder = self._path('images')
        return [dict(img_path=osp.join(folder, r['dist_img']),
                     raw_score=float(r['ssim']) if self.label == 'ssim'
                     else (5.0 - float(r['level'])) / 4.0,
                     content=r['content'], ref_path=osp.join(folder, r['ref_img']),
                     distortion=r['distortion']) for r in rows]


__all__ = ['make_synthetic_iqa', 'SyntheticIQADataset', 'PHOTOS', 'DISTORTIONS',
           'pristine_crops', 'distort', 'ssim']
