"""DIST as a stand-alone method (Huang et al., NeurIPS 2022), a classic logit baseline."""
from typing import Dict

import torch

from ..losses import dist_loss
from ..registry import MODELS
from ..utils.arguments import LossName, NonNegativeFloat, PositiveFloat
from .base import LevelwiseMethod, resize_like


@MODELS.register_module()
class DIST(LevelwiseMethod):
    """Inter- and intra-class Pearson-correlation matching of softmax outputs.

    Works on classification logits (N, C) and dense prediction maps (N, C, H, W) (every pixel is
    a sample; a student map of another size is resized bilinearly to the teacher's). See
    :func:`mmkd.losses.dist_loss` for the formula. The paper uses ``tau=1, beta=gamma=1`` on
    ImageNet and Cityscapes (``tau=4`` on CIFAR).

    Args:
        tau (float): temperature. Default 1.0.
        beta (float): inter-class (per-sample) weight. Default 1.0.
        gamma (float): intra-class (per-class) weight. Default 1.0.
        loss_name (str): key of the returned loss. Default 'loss_dist'.

    Block: logits (N, C), e.g. ``'head.fc'``, or prediction maps (N, C, H, W), e.g.
    ``'decode_head.conv_seg'``, with the same number of classes on both sides; several levels
    give one term each. Returns ``loss_dist``.

    References:
        Paper: Huang, You, Wang, Qian, Xu, "Knowledge Distillation from A Stronger Teacher",
            NeurIPS 2022 (arXiv 2205.10536).
        Code: the authors', https://github.com/hunto/DIST_KD.
    """
    #: Its teacher values are logits: a cached teacher may store them as top-K.
    reads_teacher_logits = True

    def __init__(self, tau: PositiveFloat = 1.0, beta: NonNegativeFloat = 1.0,
                 gamma: NonNegativeFloat = 1.0, loss_name: LossName = 'loss_dist', **kwargs):
        super().__init__(**kwargs)
        self.tau, self.beta, self.gamma = tau, beta, gamma
        self.loss_name = loss_name

    def build_level(self, student, teacher):
        if student.shape[1] != teacher.shape[1]:
            raise ValueError(f'DIST needs the same number of classes, got student '
                             f'{student.shape[1]} and teacher {teacher.shape[1]}.')
        return None

    def level_loss(self, student, teacher, connector, data_samples=None
                   ) -> Dict[str, torch.Tensor]:
        student = resize_like(student, teacher)
        return {self.loss_name: dist_loss(student, teacher, self.tau, self.beta, self.gamma)}
