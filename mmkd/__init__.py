"""mmkd: knowledge distillation for OpenMMLab (mmpretrain, mmdet, mmsegmentation)."""
import sys
import warnings

#: Warnings the OpenMMLab stack prints on every run and no mmkd user can act on, as
#: ``(message, category, module)`` of :func:`warnings.filterwarnings` (the message and module
#: are regular expressions matched at the start). Each is matched by its exact wording, so
#: mmkd's own warnings and every other warning of these packages still show.
QUIET_WARNINGS = (
    # setuptools < 81 (which mmengine 0.10 and mmcv's build need) warns whenever
    # ``mmengine.utils.is_installed`` imports, or re-imports, pkg_resources: on every config
    # with a 'mmdet::'-style base and every Runner start.
    ('pkg_resources is deprecated as an API', UserWarning, ''),
    # mmseg 1.x's own decode heads call its deprecated builders (``build_loss``,
    # ``build_pixel_sampler``): once per mmseg model, whatever the config says.
    (r'``build_\w+`` would be deprecated soon', UserWarning, r'mmseg\.'),
)


def quiet_openmmlab_warnings() -> None:
    """Install :data:`QUIET_WARNINGS`, unless the user chose warning filters themselves
    (``python -W ...`` or ``PYTHONWARNINGS``: then everything shows as they asked)."""
    if sys.warnoptions:
        return
    for message, category, module in QUIET_WARNINGS:
        warnings.filterwarnings('ignore', message=message, category=category, module=module)


quiet_openmmlab_warnings()  # before anything below imports the OpenMMLab packages

from .version import __version__  # noqa: E402
from .utils import register_atomic_local_backend, register_safe_globals  # noqa: E402
from .utils.metafile_cache import cache_package_metafiles  # noqa: E402

register_safe_globals()  # checkpoints load with weights_only=True, from every scheme
register_atomic_local_backend()  # checkpoints are written to a temporary file, then renamed
cache_package_metafiles()  # 'mmdet::' bases: the package's metafiles parsed once, not each time

from . import distillers, evaluation, hooks, losses, methods, models, recorders  # noqa: E402,F401
from .registry import (DATASETS, HOOKS, METRICS, MODEL_WRAPPERS, MODELS,  # noqa: E402
                       TRANSFORMS)

__all__ = ['__version__', 'MODELS', 'DATASETS', 'TRANSFORMS', 'HOOKS', 'MODEL_WRAPPERS', 'METRICS']
