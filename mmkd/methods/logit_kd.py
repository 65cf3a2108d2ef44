"""Logit distillation (Hinton et al., 2015, "Distilling the Knowledge in a Neural Network")."""
from typing import Dict

import torch

from ..losses import kl_divergence_with_temperature, standardize_logits
from ..registry import MODELS
from ..utils.arguments import LossName, PositiveFloat
from .base import LevelwiseMethod, resize_like


@MODELS.register_module()
class LogitKD(LevelwiseMethod):
    """``tau^2 * KL(softmax(t/tau) || softmax(s/tau))`` over the channel (class) dimension.

    Works on classification logits (N, C) and on dense prediction maps (N, C, H, W), where every
    position is a sample (segmentation logits; when the student map is smaller or larger it is
    resized bilinearly to the teacher's). Multi-level inputs give one term per level.
    No parameters: student and teacher must have the same number of classes.

    Args:
        tau (float): temperature. Default 1.0.
        logit_standardization (bool): z-score both logit vectors over the classes before the
            temperature (:func:`~mmkd.losses.standardize_logits`; Sun et al., CVPR 2024). Their
            CIFAR setting: tau 2, this block's weight 9, the student's CE weight 0.1.
            Default False.
        loss_name (str): key of the returned loss. Default 'loss_kd'.

    Block: logits (N, C), e.g. ``'head.fc'``, or prediction maps (N, C, H, W), e.g.
    ``'decode_head.conv_seg'``, with the same number of classes on both sides. Returns
    ``loss_kd``.

    References:
        Paper: Hinton, Vinyals, Dean, "Distilling the Knowledge in a Neural Network", NIPS
            2014 Deep Learning Workshop (arXiv 1503.02531).
        Logit standardisation: Sun, Ren, Li, Wang, Cao, "Logit Standardization in Knowledge
            Distillation", CVPR 2024; code https://github.com/sunshangquan/logit-standardization-KD.
    """
    #: Its teacher values are logits: a cached teacher may store them as top-K.
    reads_teacher_logits = True

    def __init__(self, tau: PositiveFloat = 1.0, logit_standardization: bool = False,
                 loss_name: LossName = 'loss_kd', **kwargs):
        super().__init__(**kwargs)
        self.tau = tau
        self.logit_standardization = logit_standardization
        self.loss_name = loss_name

    def build_level(self, student, teacher):
        if student.shape[1] != teacher.shape[1]:
            raise ValueError(f'LogitKD needs the same number of classes, got student '
                             f'{student.shape[1]} and teacher {teacher.shape[1]} '
                             f'(shapes {tuple(student.shape)} / {tuple(teacher.shape)}).')
        return None

    def level_loss(self, student, teacher, connector, data_samples=None
                   ) -> Dict[str, torch.Tensor]:
        student = resize_like(student, teacher)
        if self.logit_standardization:
            student, teacher = standardize_logits(student), standardize_logits(teacher)
        return {self.loss_name: kl_divergence_with_temperature(student, teacher, self.tau)}
