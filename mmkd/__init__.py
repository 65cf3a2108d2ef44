"""mmkd: knowledge distillation for OpenMMLab (mmpretrain, mmdet, mmsegmentation)."""
from .version import __version__
from .utils import register_atomic_local_backend, register_safe_globals

register_safe_globals()  # checkpoints load with weights_only=True, from every scheme
register_atomic_local_backend()  # checkpoints are written to a temporary file, then renamed

from . import distillers, evaluation, hooks, losses, methods, models, recorders  # noqa: E402,F401
from .registry import (DATASETS, HOOKS, METRICS, MODEL_WRAPPERS, MODELS,  # noqa: E402
                       TRANSFORMS)

__all__ = ['__version__', 'MODELS', 'DATASETS', 'TRANSFORMS', 'HOOKS', 'MODEL_WRAPPERS', 'METRICS']
