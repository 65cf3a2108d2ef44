"""Quality-score distillation: a student's predicted quality regressed to a teacher's.

RKIQT's inductive-bias regularisation (arXiv 2312.00591): the ViT student's conv token and inv
token each carry a quality head (:class:`~mmkd.models.heads.QualityRegressionHead`,
``head.heads.conv`` / ``head.heads.inv``), supervised by the predictions of a CNN and of an
involution IQA teacher (``head.heads.cls`` of each); the paper uses L1. Data flow, N images::

    student q_s (N, 1)   teacher q_t (N, 1)  (or (N,) / any equal shapes)
      -> loss = mean |q_s - q_t|            ('l1', default)
             or mean (q_s - q_t)^2          ('mse')
             or smooth-L1 (beta 1)          ('smooth_l1')

The teacher's prediction is a target (no gradient reaches the teacher, which is frozen). No
parameters.
"""
from typing import Dict, Literal

import torch
import torch.nn.functional as F

from ..registry import MODELS
from ..utils.arguments import LossName
from .base import LevelwiseMethod

LOSSES = dict(l1=F.l1_loss, mse=F.mse_loss, smooth_l1=F.smooth_l1_loss)


@MODELS.register_module()
class QualityKD(LevelwiseMethod):
    """Regress the student's quality prediction to the teacher's (module docstring).

    Args:
        loss (str): the regression loss: 'l1' (default, RKIQT), 'mse' or 'smooth_l1'
            (beta 1).
        loss_name (str): key of the returned loss. Default 'loss_quality_kd'.
        share_levels, level_reduction: see :class:`LevelwiseMethod`.

    Block: the two models' quality predictions, any equal shapes, e.g.
    ``student='head.heads.conv'``, ``teacher='cnn:head.heads.cls'`` ((N, 1) each). Returns
    ``loss_quality_kd``.

    References:
        Paper: Li, Zheng, Zheng, Hu, Zhang, Gao, Shen, Li, Liu, Dai, Zhang, Ji, "Less is More:
            Learning Reference Knowledge Using No-Reference Image Quality Assessment" (arXiv
            2312.00591): its inductive-bias regularisation.
        Code: none public.
    """

    def __init__(self, loss: Literal['l1', 'mse', 'smooth_l1'] = 'l1',
                 loss_name: LossName = 'loss_quality_kd', **kwargs):
        super().__init__(**kwargs)
        self.loss, self.loss_name = loss, loss_name

    def build_level(self, student, teacher):
        if student.shape != teacher.shape:
            raise ValueError(f'QualityKD needs equal shapes (one score per image each), got '
                             f'student {tuple(student.shape)} and teacher '
                             f'{tuple(teacher.shape)}: record the quality heads\' outputs, '
                             "e.g. 'head.heads.conv' and 'head.heads.cls'.")
        return None

    def level_loss(self, student, teacher, connector, data_samples=None
                   ) -> Dict[str, torch.Tensor]:
        return {self.loss_name: LOSSES[self.loss](student.float(), teacher.float().detach())}
