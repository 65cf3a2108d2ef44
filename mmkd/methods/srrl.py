"""SRRL: softmax regression representation learning -- the student's penultimate feature,
through a connector, is classified by the teacher's own frozen classifier.

"Knowledge Distillation via Softmax Regression Representation Learning" (Yang, Martinez,
Bulat, Tzimiropoulos, ICLR 2021; the paper says SRD, we use the name of the authors'
repository; authors' code jingyang2017/KD_SRRL at d2e802f: ``train_imagenet_distillation.py``, ``distiller_zoo/AIN.py``,
``models/official_resnet.py``). Not torchdistill's ``SRDLoss``, which is another method of the
same initials (Miles & Mikolajczyk, AAAI 2024). Data flow, per batch::

    student's last feature map  s  (N, C_s, H, W)    ('backbone': a tuple of one map, or a
    teacher's last feature map  t  (N, C_t, H', W')   pooled (N, C) feature such as 'neck')
    f   = connector(s)            (N, C_t, H, W)   1x1 conv (no bias) + BN + ReLU, the student's
    h_s = mean_HW(f),  h_t = mean_HW(t)   (N, C_t)  the teacher's global average pooling
    z_s = W h_s + b,   z_t = W h_t + b    (N, K)    W, b: the TEACHER's classifier, frozen
    loss_srrl_feat = feat_weight * mean_{N, C_t} (h_s - h_t)^2     (L_FM)
    loss_srrl_sr   = sr_weight   * mean_{N, K}   (z_s - z_t)^2     (L_SR, the paper's L2 choice)

The gradient reaches the student (and the connector) through the teacher's classifier, whose
parameters get none. ``z_t`` is the teacher's classifier on its own pooled feature: exactly the
teacher's logits when the classifier follows a global average pooling, as in mmpretrain's
``ImageClassifier`` with ``GlobalAveragePooling`` + ``LinearClsHead``.

Followed: the authors' code, where it is explicit. Their feature term (``statm_loss``: the
squared gap of the spatial means, averaged over channels and samples) is the paper's L_FM on
the pooled features; their logit term is ``F.mse_loss(pred_sc, pred_t) * weight``, weight 1
(``--weight``), the feature term weight 1: the defaults here. The connector is theirs (1x1
conv + BN + ReLU, He-normal init over fan-out, BN 1/0) and is applied before the pooling, to
the map; given a pooled (N, C) feature it runs on a 1x1 map (the usual CIFAR re-implementations
do that). The paper's CIFAR-100 loss weights were not read here.

Block: the teacher's classifier module is named by ``classifier`` (default 'head.fc') and read
from the bound teacher (:meth:`BaseDistillMethod.bind_teachers`; kept outside the module
registry, never trained). Returns ``loss_srrl_feat`` and ``loss_srrl_sr``.
"""
from typing import Dict

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call

from ..recorders import find_module
from ..registry import MODELS
from ..utils.arguments import InitCfg, NonNegativeFloat
from .base import BaseDistillMethod, flatten_levels

BLOCK = ("srrl=dict(student='backbone', teacher='backbone', "
         "method=dict(type='SRRL', classifier='head.fc'))")


def _one_map(x, side: str) -> torch.Tensor:
    levels = flatten_levels(x)
    if len(levels) != 1 or levels[0].dim() not in (2, 4):
        raise ValueError(f'SRRL: the {side} point must give one penultimate feature, a map '
                         f'(N, C, H, W) or a pooled (N, C), got '
                         f'{[tuple(v.shape) for v in levels]}; e.g. {BLOCK}.')
    return levels[0]


def _pool(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=(2, 3)) if x.dim() == 4 else x


@MODELS.register_module()
class SRRL(BaseDistillMethod):
    """Softmax regression representation learning (module docstring).

    Args:
        classifier (str): the teacher's module that maps its pooled penultimate feature
            (N, C_t) to logits (N, K), applied frozen to the student's connected feature.
            Default 'head.fc' (mmpretrain's ``LinearClsHead``).
        feat_weight (float): weight of the feature term L_FM (the pooled features' mean
            squared error). Default 1.0 (the authors' code).
        sr_weight (float): weight of the softmax-regression term L_SR (the mean squared error
            of the logits through the teacher's classifier). Default 1.0 (the authors' code,
            ``--weight``).

    Block: the student's and the teacher's last feature maps (``'backbone'``, a tuple of one
    map, or pooled features such as ``'neck'``), one teacher. Returns ``loss_srrl_feat`` and
    ``loss_srrl_sr``.

    References:
        Paper: Yang, Martinez, Bulat, Tzimiropoulos, "Knowledge Distillation via Softmax
            Regression Representation Learning", ICLR 2021
            (https://openreview.net/forum?id=ZzwDy_wiWv).
        Code: the authors', https://github.com/jingyang2017/KD_SRRL
            (``train_imagenet_distillation.py``, ``distiller_zoo/AIN.py``).
    """

    def __init__(self, classifier: str = 'head.fc', feat_weight: NonNegativeFloat = 1.0,
                 sr_weight: NonNegativeFloat = 1.0, init_cfg: InitCfg = None):
        super().__init__(init_cfg=init_cfg)
        self.classifier_name = classifier
        self.feat_weight, self.sr_weight = float(feat_weight), float(sr_weight)
        self._teacher = {}  # the teacher's classifier, outside nn.Module's registry
        self.connector = None

    def bind_teachers(self, teachers: Dict[str, nn.Module]) -> None:
        if len(teachers) != 1:
            raise ValueError(f'SRRL reads one teacher (its classifier), got {list(teachers)}.')
        (tname, model), = teachers.items()
        try:
            module = find_module(model, self.classifier_name, f'teacher {tname!r}')
        except KeyError as err:
            linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
            raise ValueError(f'SRRL argument classifier: {err.args[0]} Valid choices (the '
                             f"teacher's nn.Linear modules): {linears}.") from None
        self._teacher['classifier'] = module

    @property
    def classifier(self) -> nn.Module:
        if 'classifier' not in self._teacher:
            raise RuntimeError('SRRL: bind_teachers() was not called (the Distiller calls it).')
        return self._teacher['classifier']

    def classify(self, h: torch.Tensor) -> torch.Tensor:
        """The teacher's classifier on ``h`` (N, C_t), its parameters detached: the gradient
        reaches ``h``, never the teacher."""
        module = self.classifier
        params = {k: v.detach() for k, v in module.named_parameters()}
        return functional_call(module, params, (h, ))

    def build(self, student, teacher) -> None:
        s, t = _one_map(student, 'student'), _one_map(teacher, 'teacher')
        c_s, c_t = s.shape[1], t.shape[1]
        try:
            with torch.no_grad():
                z = self.classify(_pool(t))
        except Exception as err:  # a module that does not take (N, C_t)
            raise ValueError(f'SRRL: the teacher classifier {self.classifier_name!r} '
                             f'({type(self.classifier).__name__}) does not take the '
                             f"teacher's pooled feature (N, {c_t}): {err}") from err
        if not isinstance(z, torch.Tensor) or z.dim() != 2:
            raise ValueError(f'SRRL: the teacher classifier {self.classifier_name!r} must give '
                             f'logits (N, K), got {getattr(z, "shape", type(z))}.')
        conv = nn.Conv2d(c_s, c_t, kernel_size=1, bias=False)
        nn.init.kaiming_normal_(conv.weight, mode='fan_out', nonlinearity='relu')
        self.connector = nn.Sequential(conv, nn.BatchNorm2d(c_t), nn.ReLU())
        self.connector.to(device=s.device)
        super().build(student, teacher)

    def forward(self, student, teacher, data_samples=None) -> Dict[str, torch.Tensor]:
        s, t = _one_map(student, 'student'), _one_map(teacher, 'teacher').detach()
        x = s if s.dim() == 4 else s[:, :, None, None]
        h_s = self.connector(x).mean(dim=(2, 3))
        h_t = _pool(t).to(h_s.dtype)
        with torch.no_grad():
            z_t = self.classify(h_t)
        z_s = self.classify(h_s)
        return dict(loss_srrl_feat=self.feat_weight * F.mse_loss(h_s, h_t),
                    loss_srrl_sr=self.sr_weight * F.mse_loss(z_s, z_t.to(z_s.dtype)))
