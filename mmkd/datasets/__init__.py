"""Small offline datasets for distillation experiments.

* :class:`DigitsDataset`: real 8x8 handwritten digits from scikit-learn, upsampled, for
  mmpretrain classification (no files, no download).
* :func:`make_shapes_dataset`: writes a synthetic shapes dataset (COCO boxes + label maps);
  :class:`ShapesDetDataset` (mmdet) and :class:`ShapesSegDataset` (mmseg) read it.
* :class:`ShapesClsDataset`: one-shape crops for the backbone pretraining of the shapes demos'
  pretrained variant (in memory, never the dense images).

Importing this package registers the datasets in ``mmkd.registry.DATASETS``, so configs can use
``type='mmkd.DigitsDataset'`` etc. from any default scope.
"""
from .digits import DIGIT_CLASSES, DigitsDataset, digit_to_image, stratified_split
from .latent import LatentDataset
from .transforms import LoadImageFromFileAs, PackImageField, StackImages
from .transforms_multiview import MultiViews, multiview_collate
from .iqa import (IQADataset, KADID10kDataset, KonIQ10kDataset, LIVEChallengeDataset, LIVEDataset,
                  split_by_content)
from .synthetic_iqa import SyntheticIQADataset, make_synthetic_iqa
from .shapes import (SEG_CLASSES, SEG_PALETTE, SHAPE_CLASSES, SHAPE_PALETTE, ShapesDetDataset,
                     ShapesSegDataset, make_shapes_dataset)
from .shapes_cls import ShapesClsDataset, generate_shape_crop

__all__ = [
    'DigitsDataset', 'digit_to_image', 'stratified_split', 'DIGIT_CLASSES',
    'make_shapes_dataset', 'ShapesDetDataset', 'ShapesSegDataset', 'SHAPE_CLASSES',
    'SHAPE_PALETTE', 'SEG_CLASSES', 'SEG_PALETTE', 'PackImageField', 'LoadImageFromFileAs',
    'StackImages', 'MultiViews', 'multiview_collate',
    'IQADataset', 'LIVEDataset', 'LIVEChallengeDataset', 'KonIQ10kDataset', 'KADID10kDataset',
    'split_by_content', 'SyntheticIQADataset', 'make_synthetic_iqa', 'LatentDataset',
    'ShapesClsDataset', 'generate_shape_crop'
]
