"""The losses of data-free distillation (:class:`mmkd.distillers.DataFreeDistiller`): what the
student learns on generated images, and what the generator learns.

A generator G turns latents z into images x = G(z) (N, C, H, W); the frozen teacher T and the
student S both see x. Per paper (their code, the file and commit in each class)::

    DAFL (Chen et al., ICCV 2019)      generator: T alone, three terms on T(x)
        logits t (N, K), features f (N, D) = the input of T's classifier, p = softmax(t)
        one-hot      CE(t, argmax t)                        -> DAFLGeneratorLoss.loss_one_hot
        activation   -mean |f|                              -> loss_activation
        inf. entropy sum_k pbar_k log10 pbar_k,  pbar = mean_n p   -> loss_information_entropy
        student:     KL(softmax(t) || softmax(s)) summed over K, / N    (LogitKD, tau 1)
    DFAD (Fang et al., 2019)           student: L1(s, t) = mean |s - t|  (LogitL1)
                                       generator: -L1(s, t)  (the same block, maximised)
    ZSKT (Micaelli & Storkey, 2019)    student: KL(softmax(t/T) || softmax(s/T)), mean over
                                       N x K elements (ZSKTKL)  + 250 x AT on each stage (AT)
                                       generator: -KL (the KL block alone, maximised)

No term detaches the teacher: in the generator's step the gradient reaches G through T (and,
adversarially, through S); in the student's step the teacher values carry no gradient anyway.
"""
from typing import Dict

import torch
import torch.nn.functional as F

from ..registry import MODELS
from ..utils.arguments import InitCfg, LossName, NonNegativeFloat, PositiveFloat
from .base import BaseDistillMethod, LevelwiseMethod


def _same_shape(name: str, student: torch.Tensor, teacher: torch.Tensor) -> None:
    if student.shape != teacher.shape:
        raise ValueError(f'{name} compares the two models element by element and needs the '
                         f'same shape, got student {tuple(student.shape)} and teacher '
                         f'{tuple(teacher.shape)} (record the logits, e.g. "head.fc").')


@MODELS.register_module()
class LogitL1(LevelwiseMethod):
    """DFAD's discrepancy: ``mean |s - t|`` over every element (``F.l1_loss(s_logit,
    t_logit)``, VainF/Data-Free-Adversarial-Distillation ``DFAD_cifar.py``, commit c161591a).

    The student minimises it; DFAD's generator maximises the same term
    (``generator_loss=dict(type='adversarial')`` of :class:`~mmkd.DataFreeDistiller`).

    Args:
        loss_name (str): key of the returned loss. Default 'loss_l1'.

    Block: logits (N, K) (``'head.fc'``) or any two tensors of one shape. Returns ``loss_l1``.

    References:
        Paper: Fang, Song, Wang, Shen, Wang, Song, "Data-Free Adversarial Distillation"
            (arXiv 1912.11006).
        Code: the authors', https://github.com/VainF/Data-Free-Adversarial-Distillation.
    """

    def __init__(self, loss_name: LossName = 'loss_l1', **kwargs):
        super().__init__(**kwargs)
        self.loss_name = loss_name

    def build_level(self, student, teacher):
        _same_shape('LogitL1', student, teacher)
        return None

    def level_loss(self, student, teacher, connector, data_samples=None
                   ) -> Dict[str, torch.Tensor]:
        dtype = torch.promote_types(student.dtype, torch.float32)
        return {self.loss_name: F.l1_loss(student.to(dtype), teacher.to(dtype))}


@MODELS.register_module()
class ZSKTKL(LevelwiseMethod):
    """ZSKT's divergence: ``KL(softmax(t / tau) || softmax(s / tau))`` averaged over all N x K
    elements, without a ``tau^2`` factor (``F.kl_div(log_softmax(s / T), softmax(t / T))`` with
    PyTorch's default element-wise mean, polo5/ZeroShotKnowledgeTransfer ``solver.py``
    ``divergence``, commit e24915d7). It is :class:`~mmkd.methods.LogitKD` at ``tau`` divided by
    ``K * tau^2``: the weights of the paper (AT's beta = 250 against this KL) hold only with
    this scale.

    Args:
        tau (float): temperature (``--KL_temperature``). Default 1.0.
        loss_name (str): key of the returned loss. Default 'loss_kl'.

    Block: logits (N, K) on both sides. Returns ``loss_kl``.

    References:
        Paper: Micaelli, Storkey, "Zero-shot Knowledge Transfer via Adversarial Belief
            Matching", NeurIPS 2019 (arXiv 1905.09768).
        Code: the authors', https://github.com/polo5/ZeroShotKnowledgeTransfer.
    """

    def __init__(self, tau: PositiveFloat = 1.0, loss_name: LossName = 'loss_kl', **kwargs):
        super().__init__(**kwargs)
        self.tau = tau
        self.loss_name = loss_name

    def build_level(self, student, teacher):
        _same_shape('ZSKTKL', student, teacher)
        return None

    def level_loss(self, student, teacher, connector, data_samples=None
                   ) -> Dict[str, torch.Tensor]:
        dtype = torch.promote_types(student.dtype, torch.float32)
        log_q = F.log_softmax(student.to(dtype) / self.tau, dim=1)
        log_p = F.log_softmax(teacher.to(dtype) / self.tau, dim=1)
        kl = (log_p.exp() * (log_p - log_q)).sum()
        return {self.loss_name: kl / student.numel()}


@MODELS.register_module()
class DAFLGeneratorLoss(BaseDistillMethod):
    """DAFL's objective for the generator, on the teacher alone (module docstring)::

        loss_one_hot             = one_hot * CE(t, argmax t)
        loss_activation          = activation * (-mean |f|)
        loss_information_entropy = information_entropy * sum_k pbar_k log10 pbar_k

    as in ``DAFL-train.py`` (huawei-noah/Efficient-Computing, commit 225ddd2e): ``--oh 1``,
    ``--a 0.1``, ``--ie 5`` (MMRazor's CIFAR-10 config: 0.05, 0.01, 5). The information entropy
    is the negative entropy (log base 10) of the batch's mean prediction: minimising it spreads
    the generated images over the classes.

    Used as the ``'dafl'`` generator loss of :class:`~mmkd.DataFreeDistiller`, which builds
    the block itself from ``generator_loss=dict(type='dafl', logits=..., features=...)``.

    Block: teacher points ``[logits, features]`` (logits (N, K), features (N, ...), e.g.
    ``['head.fc', 'head.fc@input']``); the student value is not read. Returns
    ``loss_one_hot``, ``loss_activation`` and ``loss_information_entropy``.

    Args:
        one_hot (float): weight of the one-hot term. Default 1.0.
        activation (float): weight of the activation term. Default 0.1.
        information_entropy (float): weight of the information-entropy term. Default 5.0.

    References:
        Paper: Chen, Wang, Xu, Yang, Liu, Shi, Xu, Xu, Tian, "Data-Free Learning of Student
            Networks", ICCV 2019 (arXiv 1904.01186).
        Code: the authors', https://github.com/huawei-noah/Efficient-Computing
            (``Data-Efficient-Model-Compression/DAFL``).
    """

    def __init__(self, one_hot: NonNegativeFloat = 1.0, activation: NonNegativeFloat = 0.1,
                 information_entropy: NonNegativeFloat = 5.0, init_cfg: InitCfg = None):
        super().__init__(init_cfg=init_cfg)
        self.one_hot = float(one_hot)
        self.activation = float(activation)
        self.information_entropy = float(information_entropy)

    @staticmethod
    def _split(teacher):
        if not isinstance(teacher, (list, tuple)) or len(teacher) != 2:
            raise ValueError('DAFLGeneratorLoss reads two teacher values, [logits (N, K), '
                             f'features (N, ...)], got {type(teacher).__name__}.')
        logits, features = teacher
        if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
            raise ValueError('DAFLGeneratorLoss: the first teacher point must give logits '
                             f'(N, K) (e.g. "head.fc"), got {getattr(logits, "shape", logits)}.')
        if not isinstance(features, torch.Tensor) or features.shape[0] != logits.shape[0]:
            raise ValueError('DAFLGeneratorLoss: the second teacher point must give features '
                             '(N, ...) (e.g. "head.fc@input"), got '
                             f'{getattr(features, "shape", features)}.')
        return logits, features

    def build(self, student, teacher) -> None:
        self._split(teacher)
        super().build(student, teacher)

    def forward(self, student, teacher, data_samples=None) -> Dict[str, torch.Tensor]:
        logits, features = self._split(teacher)
        dtype = torch.promote_types(logits.dtype, torch.float32)
        logits = logits.to(dtype)
        pseudo_labels = logits.detach().argmax(dim=1)
        one_hot = F.cross_entropy(logits, pseudo_labels)
        activation = -features.to(dtype).abs().mean()
        mean_prob = F.softmax(logits, dim=1).mean(dim=0)
        entropy = (mean_prob * torch.log10(mean_prob)).sum()
        return dict(loss_one_hot=self.one_hot * one_hot,
                    loss_activation=self.activation * activation,
                    loss_information_entropy=self.information_entropy * entropy)
