"""Pipeline transforms for teachers that see inputs the student does not (privileged inputs).

A teacher declared with ``inputs='ref_img'`` reads ``data_samples[i].ref_img``, a raw (C, H, W)
image in the channel order images are loaded in (BGR in OpenMMLab), which the distiller
normalises for that teacher. A dataset supplies it by putting the image in the pipeline's
results (its own loading transform, or :class:`LoadImageFromFileAs` reading a path its data
list gives), and :class:`PackImageField` wrapping the usual ``Pack*`` transform carries it into
the data sample (the Pack* transforms keep only ``inputs`` and ``data_samples``)::

    train_pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='mmkd.LoadImageFromFileAs', key='ref_img', path_key='ref_path'),
        ...,                                   # transforms of the student's image
        dict(type='mmkd.PackImageField', keys=['ref_img'],
             pack=dict(type='PackInputs')),    # PackDetInputs / PackSegInputs alike
    ]
"""
import numpy as np
import torch
from mmcv.transforms import BaseTransform

from ..registry import TRANSFORMS


@TRANSFORMS.register_module()
class PackImageField(BaseTransform):
    """Run the ``pack`` transform, then add each image ``results[key]`` (an (H, W[, C]) array
    or a (C, H, W) tensor) to the packed data sample as a (C, H, W) tensor field of that name.

    Args:
        keys (list[str]): the results keys holding the extra images.
        pack (dict): the task's Pack* transform (built in the config's default scope).
    """

    def __init__(self, keys, pack: dict):
        from mmengine.registry import TRANSFORMS as ROOT
        self.keys = [keys] if isinstance(keys, str) else list(keys)
        self.pack = ROOT.build(pack) if isinstance(pack, dict) else pack

    def transform(self, results: dict) -> dict:
        missing = [k for k in self.keys if k not in results]
        if missing:
            raise KeyError(f'PackImageField: the results have no {missing[0]!r} image; a '
                           'transform before it must load it (keys present: '
                           f'{sorted(results)}).')
        images = {k: _chw_tensor(results[k], k) for k in self.keys}
        packed = self.pack(results)
        for key, img in images.items():
            packed['data_samples'].set_field(img, key)
        return packed

    def __repr__(self):
        return f'{type(self).__name__}(keys={self.keys!r}, pack={self.pack!r})'


def _chw_tensor(img, key: str) -> torch.Tensor:
    if isinstance(img, np.ndarray) and img.ndim in (2, 3):
        img = img[..., None] if img.ndim == 2 else img
        return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
    if isinstance(img, torch.Tensor) and img.dim() == 3:
        return img
    raise TypeError(f'PackImageField: {key!r} must be an (H, W[, C]) array or a (C, H, W) '
                    f'tensor, got {type(img).__name__} of shape {getattr(img, "shape", None)}.')


@TRANSFORMS.register_module()
class LoadImageFromFileAs(BaseTransform):
    """Load the image at ``results[path_key]`` into ``results[key]`` (H, W, C uint8, BGR), for
    a second image per item such as a reference picture. Uses mmcv's image I/O.

    ``transforms`` (optional, a list of transform configs, e.g. ``[dict(type='RandomCrop',
    crop_size=224)]``) run on that image alone, as if it were a results dict's ``img``: a
    non-aligned reference is cropped at its own resolution and position, not with the item's
    crop box (and never resized from another size, which would change its sharpness)."""

    def __init__(self, key: str, path_key: str, color_type: str = 'color',
                 backend_args: dict = None, transforms: list = None):
        from mmcv.transforms import Compose
        self.key, self.path_key = key, path_key
        self.color_type, self.backend_args = color_type, backend_args
        self.transforms = Compose(list(transforms)) if transforms else None

    def transform(self, results: dict) -> dict:
        import mmcv
        import mmengine.fileio as fileio
        if self.path_key not in results:
            raise KeyError(f'LoadImageFromFileAs: the results have no {self.path_key!r} path '
                           '(the dataset\'s data list must give one per item).')
        data = fileio.get(results[self.path_key], backend_args=self.backend_args)
        img = mmcv.imfrombytes(data, flag=self.color_type)
        if self.transforms is not None:
            own = self.transforms(dict(img=img, img_path=results[self.path_key],
                                       img_shape=img.shape[:2], ori_shape=img.shape[:2]))
            img = own['img']
        results[self.key] = img
        return results


@TRANSFORMS.register_module()
class StackImages(BaseTransform):
    """Concatenate images on the channel axis into ``results[out]``: the (H, W, C_1 + C_2 +
    ...) input of a teacher that sees several images at once, e.g. the distorted image and a
    non-aligned reference of RKIQT's teacher (``keys=['img', 'nar_img']``). The distiller feeds
    the same concatenation when that teacher is declared with ``inputs=['inputs', 'nar_img']``
    (:mod:`mmkd.distillers.teachers`). Images of another size than the first are resized to it
    (``interpolation``, mmcv's), as references of another resolution must be; ``img_shape``
    follows ``out``.

    Args:
        keys (list[str]): results keys, in channel order. At least two.
        out (str): where the stack goes. Default 'img'.
        interpolation (str): for resizing. Default 'bilinear'.
    """

    def __init__(self, keys, out: str = 'img', interpolation: str = 'bilinear'):
        self.keys = list(keys)
        if len(self.keys) < 2 or len(set(self.keys)) != len(self.keys):
            raise ValueError(f'StackImages: keys must be two or more distinct results keys, got '
                             f'{keys!r}')
        self.out, self.interpolation = out, interpolation

    def transform(self, results: dict) -> dict:
        import mmcv
        missing = [k for k in self.keys if k not in results]
        if missing:
            raise KeyError(f'StackImages: the results have no {missing[0]!r} image (keys '
                           f'present: {sorted(results)}).')
        h, w = results[self.keys[0]].shape[:2]
        images = [results[k] if results[k].shape[:2] == (h, w) else
                  mmcv.imresize(results[k], (w, h), interpolation=self.interpolation)
                  for k in self.keys]
        # grey images (and cv2's resize of a 1-channel image) are (H, W): give them a channel
        images = [img if img.ndim == 3 else img[..., None] for img in images]
        results[self.out] = np.ascontiguousarray(np.concatenate(images, axis=2))
        if self.out == 'img':
            results['img_shape'] = (h, w)
        return results

    def __repr__(self):
        return f'{type(self).__name__}(keys={self.keys!r}, out={self.out!r})'
