"""Several augmented views of one image in one training batch (MLKD's weak and strong views).

A method that compares the two models on several views of the same images (MLKD: a weak and a
strong augmentation, :class:`mmkd.methods.mlkd.MLKD`) needs no special trainer: the views are
made by the pipeline and laid out in the batch by the collate function, and the distiller runs
both models once on the whole batch as usual::

    item:     MultiViews(views=[weak, strong])  -> results['img'] = [weak_img, strong_img]
              PackInputs (mmpretrain packs a list of images as a list of (C, H, W) tensors)
    batch:    mmkd.multiview_collate            -> inputs  [w_1 .. w_B, s_1 .. s_B]  (2B images)
                                                   samples [d_1 .. d_B, d_1' .. d_B'] (copies)
    model:    ClsDataPreprocessor (unchanged)   -> (2B, C, H, W); student and teacher on all 2B

The layout is view-major: with V views and B dataset items per batch, image ``v * B + i`` is
view ``v`` of item ``i``, and its data sample is a copy of item ``i``'s with the metainfo
``view=v`` (the labels are duplicated, so the student's own cross-entropy covers every view,
as MLKD's authors apply it to both). ``train_dataloader.batch_size`` counts items: the models
see ``V x batch_size`` images. Validation and test pipelines keep one view (no collate change).

Config::

    train_pipeline = [
        dict(type='mmkd.MultiViews', views=[
            [dict(type='RandomCrop', crop_size=32, padding=4),
             dict(type='RandomFlip', prob=0.5, direction='horizontal')],           # weak
            [dict(type='RandomCrop', crop_size=32, padding=4),
             dict(type='RandomFlip', prob=0.5, direction='horizontal'),
             dict(type='RandAugment', ...)],                                        # strong
        ]),
        dict(type='PackInputs'),
    ]
    train_dataloader = dict(collate_fn=dict(type='mmkd.multiview_collate'), ...)

Why a collate function and not one image of stacked views: the student's data preprocessor
(mmpretrain's ``ClsDataPreprocessor``) normalises and colour-converts 3-channel (C, H, W)
images; views stacked on the channel axis would be refused (it checks 3 channels) and views
stacked on a new leading axis would be silently mis-converted. Flattening the views into the
batch before the preprocessor keeps the student's preprocessor, its teachers' re-normalisation
(:mod:`mmkd.distillers.teachers`) and the exported student unchanged.

The collate function is registered in mmkd's ``FUNCTIONS`` registry (a child of MMEngine's,
which the Runner builds ``collate_fn`` from) as ``'mmkd.multiview_collate'``, so it is found
from any default scope. A batch whose items are not multi-view (a pipeline without
:class:`MultiViews`) is refused by name.
"""
import copy
from typing import List, Sequence

from mmcv.transforms import BaseTransform
from mmengine.dataset import pseudo_collate

from ..registry import FUNCTIONS, TRANSFORMS

#: The data-sample metainfo key naming the view (0 = the first pipeline of MultiViews).
VIEW_KEY = 'view'


@TRANSFORMS.register_module()
class MultiViews(BaseTransform):
    """Run each pipeline of ``views`` on its own copy of the item and put the images, in that
    order, as a list in ``results['img']`` (for MLKD: ``[weak, strong]``). The other keys of
    the results (``img_shape``, ``flip``, ...) are those of the first view. Each view draws its
    own random parameters (the authors' weak and strong views are two independent crops).

    Args:
        views (list[list[dict]]): one pipeline (a list of transform configs, built in the
            config's default scope; may be empty: the image as loaded) per view. At least two.
    """

    def __init__(self, views: Sequence[Sequence[dict]]):
        from mmcv.transforms import Compose
        if (not isinstance(views, (list, tuple)) or len(views) < 2
                or not all(isinstance(v, (list, tuple)) for v in views)):
            raise ValueError('MultiViews: views must be a list of two or more pipelines (lists '
                             f'of transform configs), got {views!r:.200}.')
        self.views = [Compose(list(v)) for v in views]

    def transform(self, results: dict) -> dict:
        if 'img' not in results:
            raise KeyError('MultiViews: the results have no image (`img`); load it before '
                           f'this transform (keys present: {sorted(results)}).')
        outs: List[dict] = []
        for i, pipeline in enumerate(self.views):
            out = pipeline(copy.deepcopy(results))
            if out is None:
                raise ValueError(f'MultiViews: the pipeline of view {i} dropped the item '
                                 '(a transform returned None).')
            outs.append(out)
        results = outs[0]
        results['img'] = [out['img'] for out in outs]
        return results

    def __repr__(self):
        return f'{type(self).__name__}(views={self.views!r})'


def multiview_collate(data_batch: Sequence[dict]) -> dict:
    """Collate items packed from :class:`MultiViews` into one view-major batch (module
    docstring): ``inputs`` a list of ``V x B`` (C, H, W) tensors, view 0 of every item first;
    ``data_samples`` the items' samples repeated per view (copies, metainfo ``view``)."""
    if not data_batch:
        return pseudo_collate(data_batch)
    counts = set()
    for item in data_batch:
        inputs = item.get('inputs') if isinstance(item, dict) else None
        if not isinstance(inputs, (list, tuple)):
            raise TypeError(
                'mmkd.multiview_collate: every item must hold a list of views in `inputs` '
                "(put dict(type='mmkd.MultiViews', views=[...]) before PackInputs in the "
                f'train pipeline); got an item whose inputs are {type(inputs).__name__}.')
        counts.add(len(inputs))
    if len(counts) != 1 or min(counts) < 1:
        raise ValueError('mmkd.multiview_collate: every item must have the same number of '
                         f'views, got {sorted(counts)}.')
    num_views = counts.pop()
    batch = pseudo_collate(data_batch)  # transposes the views: [view][item]
    batch['inputs'] = [img for view in batch['inputs'] for img in view]
    samples = batch.get('data_samples')
    if samples is not None:
        repeated = []
        for v in range(num_views):
            for sample in samples:
                copy_ = copy.deepcopy(sample)
                copy_.set_metainfo({VIEW_KEY: v})
                repeated.append(copy_)
        batch['data_samples'] = repeated
    return batch


FUNCTIONS.register_module(name='multiview_collate', module=multiview_collate)
