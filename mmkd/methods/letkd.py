"""letKD: a knowledge-distillation layer that stays in the student and lets it decide.

Gorgun, Gurbuz, Alatan, "Knowledge Distillation Layer that Lets the Student Decide", BMVC 2023
(arXiv 2309.02843; the authors' code: adagorgun/letKD-framework, built on QUEST). Unlike the
other methods, the KD layer is **part of the student**, at inference too: it is an insert
(:mod:`mmkd.distillers.inserts`) after a stage of the student, and only its *scores* are
supervised by the teacher.

Data flow (B batch, C student channels, K templates, H x W the student's map)::

    student stage output x (B, C, H, W)
      KDLayer (inserted after the stage; kept at test and export):
        scores = s1 * cos(x, w_k)                  (B, K, H, W)  CosineConv2d C->K, s1 init 3
        value  = s2 * cos(ReLU(BN(scores)), v_c)   (B, C, H, W)  CosineConv2d K->C, s2 init 1
        out    = x + alpha * value                 -> the rest of the student (alpha 1)
    teacher feature f (B, C_T, H_T, W_T), average-pooled to (H, W) when larger
      LetKD (penultimate):   p = softmax(-||f - c_k||^2 / T)            over K k-means centres
      LetKDSubclass (inter): z = LDA(f) (B, n, H, W); j = the nearest of the ground-truth
                             class's M sub-class centres to z; p = S[j]   (S: (N*M, N*M))
    loss = KL(p || softmax(scores)): summed over K, averaged over the B*H*W positions

Both targets come from a templates file written offline by ``tools/analysis/letkd_templates.py``
(k-means centres; or LDA, per-class sub-class centres and the score matrix S, whose row s is
how often the features of sub-class s lie nearest to each sub-class's mean). The file's tensors
become frozen buffers (not saved in checkpoints: the config names the file). What the authors'
code does, and where we differ:

- The student's templates ``w_k`` are random (He init) and learned; the k-means centres are
  used on the teacher side only, to make the targets (as the authors).
- T = 1 on raw squared distances (the authors' code multiplies by an inverse temperature 1); on
  real features that makes the target close to one-hot. ``temperature`` is configurable.
- A teacher map larger than the student's is average-pooled to its size (the authors pool
  2x2 for their heterogeneous pairs); a smaller one is an error.
- The authors' chunked loops skip the remainder rows of their offline statistics; the
  templates tool uses every sampled position.
"""
import math
from typing import Dict, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule

from mmkd.registry import MODELS

from ..utils.arguments import InitCfg, PathLike, PositiveFloat
from .base import BaseDistillMethod, gt_labels

TEMPLATE_KINDS = ('kmeans', 'subclass')


class CosineConv2d(nn.Module):
    """1x1 convolution of the channel-normalised input with channel-normalised kernels:
    ``y[:, k] = scale * cos(x, w_k)`` at every position, no bias.

    Args:
        in_channels, out_channels (int): C_in and C_out.
        scale (float): initial value of the scale (letKD: 3.0 for the scores, 1.0 for the
            value). Default 1.0.
        learn_scale (bool): the scale is a parameter (the authors'), else a fixed buffer.
        eps (float): of the L2 normalisations (F.normalize's default).

    Shapes: (B, C_in, H, W) -> (B, C_out, H, W); every output lies in [-scale, scale].
    """

    def __init__(self, in_channels: int, out_channels: int, scale: float = 1.0,
                 learn_scale: bool = True, eps: float = 1e-12):
        super().__init__()
        # He init, as the authors' (N(0, sqrt(2 / C_in))); the norm of a row does not matter.
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels) *
                                   math.sqrt(2.0 / in_channels))
        scale = torch.tensor(float(scale))
        if learn_scale:
            self.scale = nn.Parameter(scale)
        else:
            self.register_buffer('scale', scale)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.normalize(x, dim=1, eps=self.eps)
        w = F.normalize(self.weight, dim=1, eps=self.eps)
        return self.scale * torch.einsum('bchw,kc->bkhw', x, w)

    def extra_repr(self) -> str:
        k, c = self.weight.shape
        return f'{c}, {k}, learn_scale={isinstance(self.scale, nn.Parameter)}'


@MODELS.register_module()
class KDLayer(BaseModule):
    """letKD's KD layer, an insert kept in the student (module docstring).

    Args:
        in_channels (int, optional): C, the channels of the stage it follows (its output has C
            too). Leave it out under ``mmkd.Distiller(student_inserts=...)``: it is read from
            the stage's output in the dry run (``channels_argument``). A model built without a
            distiller (``mmkd.StudentWithInserts``) states it; the config
            ``tools/model_converters/extract_student.py`` writes does.
        num_templates (int): K (the authors: 4096 after the last stage, classes x 8 sub-classes
            after the first block of the last stage); must match the templates file.
        alpha (float): weight of the value in ``x + alpha * value``. Default 1.0 (the authors'
            except ResNet-50 -> MobileNetV2: 0.2 / 0.1).
        score_scale (float): initial scale of the scores' cosine conv. Default 3.0 (authors').
        value_scale (float): initial scale of the value's cosine conv. Default 1.0 (authors').

    Sub-modules: ``scores`` (its output, (B, K, H, W), is what the method supervises: record
    ``kd_inserts.<name>.scores``), ``bn``, ``value``. Input and output (B, C, H, W).
    """

    #: The argument mmkd.Distiller fills in with the channels of the output this insert follows.
    channels_argument = 'in_channels'

    def __init__(self, in_channels: Optional[int] = None, num_templates: Optional[int] = None,
                 alpha: float = 1.0, score_scale: float = 3.0, value_scale: float = 1.0,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        for name, value in (('in_channels', in_channels), ('num_templates', num_templates)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(
                    f'KDLayer {name} must be an int >= 1, got {value!r}.' +
                    (' Under mmkd.Distiller(student_inserts=...) leave it out: it is read '
                     'from the stage the layer follows in the dry run; a model built without a '
                     'distiller (mmkd.StudentWithInserts) must state it.'
                     if name == 'in_channels' and value is None else
                     ' It must match the templates file (tools/analysis/letkd_templates.py).'
                     if name == 'num_templates' else ''))
        self.in_channels = in_channels
        self.scores = CosineConv2d(in_channels, num_templates, scale=score_scale)
        self.bn = nn.BatchNorm2d(num_templates)
        self.value = CosineConv2d(num_templates, in_channels, scale=value_scale)
        self.alpha = alpha

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            raise TypeError('KDLayer follows a module whose output is one (B, C, H, W) map; '
                            f'got {type(x).__name__}'
                            f'{tuple(x.shape) if isinstance(x, torch.Tensor) else ""}. Insert '
                            'it after a stage (e.g. backbone.layer4), not after the backbone.')
        if x.shape[1] != self.in_channels:
            # Said here: the cosine convolution would fail in einsum without naming either.
            raise ValueError(f'KDLayer has in_channels={self.in_channels} but the stage it '
                             f'follows gives {x.shape[1]}-channel maps (shape '
                             f'{tuple(x.shape)}): set the KDLayer\'s in_channels='
                             f'{x.shape[1]} (module=dict(type=\'KDLayer\', in_channels='
                             f'{x.shape[1]}, ...)), or insert it after a stage of '
                             f'{self.in_channels} channels.')
        scores = self.scores(x)
        return x + self.alpha * self.value(F.relu(self.bn(scores)))


def load_templates(path: str, kind: str) -> Dict[str, torch.Tensor]:
    """The tensors of a templates file (``tools/analysis/letkd_templates.py``), safely."""
    from mmkd.utils.checkpoint import safe_torch_load
    try:
        data = safe_torch_load(path)
    except FileNotFoundError as e:
        raise FileNotFoundError(
            f'letKD templates file {path} does not exist: make it from the trained teacher with '
            f'tools/analysis/letkd_templates.py --kind {kind} ... --out {path} (the demo '
            'configs list the arguments in `letkd_templates`; tools/demo.py and '
            'tools/benchmark/quality.py run it for them).') from e
    if not isinstance(data, dict) or data.get('kind') not in TEMPLATE_KINDS:
        raise ValueError(f'{path}: not a letKD templates file (a dict with kind in '
                         f'{list(TEMPLATE_KINDS)}; write one with '
                         'tools/analysis/letkd_templates.py).')
    if data['kind'] != kind:
        raise ValueError(f'{path} holds {data["kind"]!r} templates; this method needs {kind!r} '
                         f'(tools/analysis/letkd_templates.py --kind {kind}).')
    return data


def pool_to(teacher: torch.Tensor, student: torch.Tensor) -> torch.Tensor:
    """Average-pool the teacher map (B, C_T, H_T, W_T) to the student's (H, W) (an integer
    factor smaller, as the authors' 2x2 pooling of heterogeneous pairs)."""
    (h, w), (ht, wt) = student.shape[2:], teacher.shape[2:]
    if (ht, wt) == (h, w):
        return teacher
    if ht % h or wt % w:
        raise ValueError(f'letKD: the teacher map ({ht}x{wt}) is not an integer multiple of '
                         f"the student's ({h}x{w}); record points of matching sizes.")
    return F.avg_pool2d(teacher, kernel_size=(ht // h, wt // w))


def positionwise_kl(target: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """KL(target || softmax(scores)) over dim 1, summed over it and averaged over the B*H*W
    positions (``F.kl_div(..., reduction='batchmean')`` on (B*H*W, K) rows, the authors')."""
    k = scores.shape[1]
    logq = F.log_softmax(scores.permute(0, 2, 3, 1).reshape(-1, k), dim=1)
    p = target.permute(0, 2, 3, 1).reshape(-1, k)
    return F.kl_div(logq, p, reduction='batchmean')


class _TemplatesMethod(BaseDistillMethod):
    kind = ''

    def __init__(self, templates: PathLike, init_cfg: InitCfg = None):
        super().__init__(init_cfg=init_cfg)
        self.templates_file = templates
        data = load_templates(templates, self.kind)
        missing = [k for k in self.buffers_of_file if k not in data]
        if missing:
            raise KeyError(f'{templates}: no {missing} in this {self.kind!r} templates file.')
        for key in self.buffers_of_file:
            # Not saved in checkpoints (the config names the file; ImageNet's 8,000 x 8,000
            # score matrix would add 256 MB to each).
            self.register_buffer(key, torch.as_tensor(data[key]).float(), persistent=False)
        self.file_info = {k: v for k, v in data.items() if k not in self.buffers_of_file}

    @property
    def num_templates(self) -> int:
        return self.centres.shape[0]

    def build(self, student, teacher) -> None:
        for side, v in (('student', student), ('teacher', teacher)):
            if not isinstance(v, torch.Tensor) or v.dim() != 4:
                raise ValueError(f'{type(self).__name__}: the {side} point must give one '
                                 '(B, C, H, W) map (student: a KDLayer\'s scores, '
                                 f'"kd_inserts.<name>.scores"), got {type(v).__name__}'
                                 f'{tuple(v.shape) if isinstance(v, torch.Tensor) else ""}.')
        if teacher.shape[1] != self.feature_width:
            raise ValueError(f'{type(self).__name__}: {self.templates_file} was made from '
                             f'{self.feature_width}-channel features but the teacher point '
                             f'gives {teacher.shape[1]} channels: record the point the '
                             'templates were made from, or make them again.')
        if student.shape[1] != self.num_templates:
            raise ValueError(f'{type(self).__name__}: the student scores have '
                             f'{student.shape[1]} channels but {self.templates_file} holds '
                             f'{self.num_templates} templates: set the KDLayer\'s '
                             f'num_templates={self.num_templates}.')
        pool_to(teacher, student)  # fails now on sizes it cannot pool
        super().build(student, teacher)

    def forward(self, student, teacher, data_samples=None) -> Dict[str, torch.Tensor]:
        with torch.no_grad():
            target = self.target(pool_to(teacher, student).float(), data_samples)
        return dict(loss_letkd=positionwise_kl(target, student.float()))


@MODELS.register_module()
class LetKD(_TemplatesMethod):
    """letKD's penultimate supervision: the scores of a :class:`KDLayer` after the student's
    last stage learn the teacher's soft assignment of its last-stage features to K k-means
    centres, ``softmax(-||f - c_k||^2 / temperature)`` (module docstring).

    Args:
        templates (str): a ``kmeans`` file of ``tools/analysis/letkd_templates.py``:
            ``centres`` (K, C_T).
        temperature (float): of the target. Default 1.0 (the authors').

    Block: ``student='kd_inserts.<name>.scores'`` (B, K, H, W), ``teacher=<the point the
    templates were made from>`` (B, C_T, H_T, W_T). Returns ``loss_letkd``.

    References:
        Paper: Gorgun, Gurbuz, Alatan, "Knowledge Distillation Layer that Lets the Student
            Decide", BMVC 2023 (arXiv 2309.02843).
        Code: the authors', https://github.com/adagorgun/letKD-framework.
    """
    kind = 'kmeans'
    buffers_of_file = ('centres', )

    def __init__(self, templates: PathLike, temperature: PositiveFloat = 1.0,
                 init_cfg: InitCfg = None):
        super().__init__(templates, init_cfg=init_cfg)
        self.temperature = temperature

    @property
    def feature_width(self) -> int:
        return self.centres.shape[1]

    def target(self, teacher: torch.Tensor, data_samples=None) -> torch.Tensor:
        """(B, C_T, H, W) -> (B, K, H, W) soft assignment."""
        return F.softmax(-squared_distances(teacher, self.centres) / self.temperature, dim=1)


def squared_distances(x: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """||x[:, :, h, w] - centres[k]||^2 for every position: (B, C, H, W), (K, C) -> (B, K, H, W).
    """
    b, c, h, w = x.shape
    rows = x.permute(0, 2, 3, 1).reshape(-1, c)
    d = torch.cdist(rows, centres).square()
    return d.reshape(b, h, w, -1).permute(0, 3, 1, 2)


@MODELS.register_module()
class LetKDSubclass(_TemplatesMethod):
    """letKD's intermediate supervision: the scores of a :class:`KDLayer` after the first
    block of the student's last stage learn the row of the teacher's sub-class score matrix
    of the sub-class each teacher position falls in (module docstring).

    Online, each teacher position is projected by the LDA (``(f - lda_mean) @ lda_scalings``),
    and assigned to the nearest sub-class centre *among its ground-truth class's* M centres
    (sub-class s = M * class + j); the target is ``score_matrix[s]``.

    Args:
        templates (str): a ``subclass`` file of ``tools/analysis/letkd_templates.py``:
            ``lda_mean`` (C_T,), ``lda_scalings`` (C_T, n), ``centres`` (N*M, n),
            ``score_matrix`` (N*M, N*M), ``num_subclasses`` (M).

    Block: ``student='kd_inserts.<name>.scores'`` (B, K, H, W) of the KD layer after the first
    block of the last stage, ``teacher=<the point the templates were made from>`` (B, C_T,
    H_T, W_T); the data samples' ``gt_label``. Returns ``loss_letkd``.

    References:
        Paper: Gorgun, Gurbuz, Alatan, "Knowledge Distillation Layer that Lets the Student
            Decide", BMVC 2023 (arXiv 2309.02843).
        Code: the authors', https://github.com/adagorgun/letKD-framework.
    """
    kind = 'subclass'
    buffers_of_file = ('lda_mean', 'lda_scalings', 'centres', 'score_matrix')

    def __init__(self, templates: PathLike, init_cfg: InitCfg = None):
        super().__init__(templates, init_cfg=init_cfg)
        self.num_subclasses = int(self.file_info['num_subclasses'])
        n = self.centres.shape[0]
        if n % self.num_subclasses or self.score_matrix.shape != (n, n):
            raise ValueError(f'{templates}: {n} centres, {self.num_subclasses} sub-classes per '
                             f'class and a {tuple(self.score_matrix.shape)} score matrix do not '
                             'agree.')

    @property
    def feature_width(self) -> int:
        return self.lda_mean.shape[0]

    def assign(self, teacher: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(B, C_T, H, W), (B,) -> (B, H, W) sub-class index of each position, the nearest of
        its image's class's M centres in LDA space."""
        b, c, h, w = teacher.shape
        z = (teacher.permute(0, 2, 3, 1) - self.lda_mean) @ self.lda_scalings  # (B, H, W, n)
        m = self.num_subclasses
        classes = self.centres.shape[0] // m
        if labels.min() < 0 or labels.max() >= classes:
            raise ValueError(f'LetKDSubclass: labels {labels.tolist()} outside the '
                             f'{classes} classes of {self.templates_file}.')
        own = self.centres.view(classes, m, -1)[labels]  # (B, M, n)
        d = torch.cdist(z.reshape(b, h * w, -1), own).square()  # (B, H*W, M)
        j = d.argmin(dim=2).view(b, h, w)
        return labels.view(b, 1, 1) * m + j

    def target(self, teacher: torch.Tensor, data_samples=None) -> torch.Tensor:
        labels = gt_labels(data_samples, teacher.shape[0], teacher.device, 'LetKDSubclass')
        rows = self.score_matrix[self.assign(teacher, labels)]  # (B, H, W, N*M)
        return rows.permute(0, 3, 1, 2)
