"""One optimiser per part of a distiller: the student, each trainable teacher, a generator.

A distiller whose teachers learn (online / mutual learning) or whose inputs come from a
generator (data-free distillation) trains several models. With one ``optim_wrapper`` (any
OpenMMLab config's) every parameter is in one optimiser, which is valid and the simplest. To give
each its own optimiser, learning rate and schedule, as the papers do, name the parts::

    optim_wrapper = dict(
        constructor='mmkd.DistillerOptimWrapperConstructor',
        student=dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.1, momentum=0.9)),
        peer=dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.1, momentum=0.9)))

The keys are the distiller's :meth:`~mmkd.distillers.Distiller.optim_groups`: ``'student'``
(the student with its inserts and every method's own modules: projectors, connectors) and one
per trainable teacher (its name) or generator (``'generator'``). Each value is an ordinary
``optim_wrapper`` dict (``type``, ``optimizer``, ``paramwise_cfg``, ``clip_grad``,
``accumulative_counts`` ...), built by MMEngine's own constructor over that part alone (a
``paramwise_cfg`` key names parameters as the distiller does: ``student.backbone``). The result
is MMEngine's ``OptimWrapperDict``; ``param_scheduler`` applies to each, or give
``param_scheduler=dict(student=[...], peer=[...])``. Every part needs a key, and every key a part:
a missing or unknown one fails at build naming the valid keys.
"""
import copy

import torch.nn as nn
from mmengine.model import is_model_wrapper
from mmengine.optim import OptimWrapperDict

from ..registry import OPTIM_WRAPPER_CONSTRUCTORS


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class DistillerOptimWrapperConstructor:
    """Build an ``OptimWrapperDict``: one optimiser wrapper per part of the distiller.

    Args:
        optim_wrapper_cfg (dict): part name -> that part's ``optim_wrapper`` config.
        paramwise_cfg (dict, optional): not accepted here: give it inside a part's config.
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg=None):
        if paramwise_cfg is not None:
            raise ValueError('optim_wrapper.paramwise_cfg: with '
                             "constructor='mmkd.DistillerOptimWrapperConstructor' give it inside "
                             "a part's config (optim_wrapper.student.paramwise_cfg).")
        if not isinstance(optim_wrapper_cfg, dict) or not optim_wrapper_cfg or not all(
                isinstance(v, dict) for v in optim_wrapper_cfg.values()):
            raise TypeError('optim_wrapper with constructor='
                            "'mmkd.DistillerOptimWrapperConstructor' maps each part of the "
                            "distiller to an optim_wrapper dict, e.g. dict(constructor=..., "
                            "student=dict(optimizer=...), peer=dict(optimizer=...)); got "
                            f'{optim_wrapper_cfg!r:.300}.')
        self.optim_wrapper_cfg = copy.deepcopy(dict(optim_wrapper_cfg))

    def __call__(self, model: nn.Module) -> OptimWrapperDict:
        from mmengine.optim import build_optim_wrapper
        distiller = model.module if is_model_wrapper(model) else model
        if not hasattr(distiller, 'optim_groups'):
            raise TypeError("constructor='mmkd.DistillerOptimWrapperConstructor' is for mmkd "
                            f'distillers; the model is a {type(distiller).__name__}.')
        groups = distiller.optim_groups()
        given, valid = set(self.optim_wrapper_cfg), list(groups)
        if given != set(valid):
            raise KeyError(
                'optim_wrapper (mmkd.DistillerOptimWrapperConstructor): '
                f'unknown part(s) {sorted(given - set(valid))}, missing part(s) '
                f'{sorted(set(valid) - given)}; this distiller\'s parts are {valid} (give each '
                'its own optim_wrapper dict, or use one plain optim_wrapper for all).')
        seen = {}
        for name, part in groups.items():
            for p in part.parameters():
                if id(p) in seen:
                    raise ValueError(f'A parameter is in two optimiser parts, {seen[id(p)]!r} '
                                     f'and {name!r}.')
                seen[id(p)] = name
        return OptimWrapperDict(**{name: build_optim_wrapper(groups[name], cfg)
                                   for name, cfg in self.optim_wrapper_cfg.items()})
