"""mmkd: knowledge distillation for OpenMMLab (mmpretrain, mmdet, mmsegmentation)."""
from .version import __version__
from .utils import register_safe_globals

register_safe_globals()

from . import distillers, losses, methods, models, recorders  # noqa: E402,F401  (register)
from .registry import DATASETS, HOOKS, MODELS, TRANSFORMS  # noqa: E402

__all__ = ['__version__', 'MODELS', 'DATASETS', 'TRANSFORMS', 'HOOKS']
