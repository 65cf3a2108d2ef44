"""Named distances between a (refined) student output and the teacher's, selectable in configs.

``build_distance('mse')`` or ``build_distance(dict(type='kl', tau=4.0))`` returns a callable
``f(student, teacher) -> scalar``; methods that let users pick their distance (DiffKD...) use it.
"""
import functools
from typing import Callable, Union

import torch
import torch.nn.functional as F

from .dist_loss import dist_loss
from .kd_loss import kl_divergence_with_temperature


def mse_distance(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean squared error over all elements, computed in float32 or wider."""
    dtype = torch.promote_types(student.dtype, torch.float32)
    return F.mse_loss(student.to(dtype), teacher.to(dtype))


DISTANCES = {
    'mse': (mse_distance, ()),
    'kl': (kl_divergence_with_temperature, ('tau', )),
    'dist': (dist_loss, ('tau', 'beta', 'gamma')),
}


def build_distance(cfg: Union[str, dict]) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Build a distance from ``'mse' | 'kl' | 'dist'`` or ``dict(type=..., **options)``.

    Options: kl -> tau; dist -> tau, beta, gamma. Unknown names or options raise a ValueError
    listing the valid ones.
    """
    cfg = dict(type=cfg) if isinstance(cfg, str) else dict(cfg)
    name = cfg.pop('type', None)
    if name not in DISTANCES:
        raise ValueError(f'Unknown distance {name!r}; valid distances: {sorted(DISTANCES)}.')
    fn, options = DISTANCES[name]
    unknown = sorted(set(cfg) - set(options))
    if unknown:
        raise ValueError(f'Distance {name!r} got unknown options {unknown}; valid options: '
                         f'{list(options)}.')
    return functools.partial(fn, **cfg) if cfg else fn
