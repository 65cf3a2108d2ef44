"""mmkd's registries: children of MMEngine's roots, scope ``mmkd``.

Because they hang off MMEngine's root registries, ``type='mmkd.Distiller'`` resolves
from any default scope (``mmdet``, ``mmseg``, ``mmpretrain``), and ``default_scope='mmkd'`` finds
mmkd's own modules first, then MMEngine's. Student and teacher models are never built through
these registries: the distiller builds each under its own package's scope (see
:func:`mmkd.distillers.model_builder.build_model_in_scope`).
"""
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import FUNCTIONS as MMENGINE_FUNCTIONS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODEL_WRAPPERS as MMENGINE_MODEL_WRAPPERS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import \
    OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import Registry

# Distillers, distillation methods (connector + loss) and standalone losses are all nn.Modules.
MODELS = Registry('model', parent=MMENGINE_MODELS, scope='mmkd',
                  locations=['mmkd.distillers', 'mmkd.methods', 'mmkd.losses'])
DATASETS = Registry('dataset', parent=MMENGINE_DATASETS, scope='mmkd',
                    locations=['mmkd.datasets'])
TRANSFORMS = Registry('transform', parent=MMENGINE_TRANSFORMS, scope='mmkd',
                      locations=['mmkd.datasets'])
HOOKS = Registry('hook', parent=MMENGINE_HOOKS, scope='mmkd', locations=['mmkd.hooks'])
MODEL_WRAPPERS = Registry('model_wrapper', parent=MMENGINE_MODEL_WRAPPERS, scope='mmkd',
                          locations=['mmkd.distillers'])
METRICS = Registry('metric', parent=MMENGINE_METRICS, scope='mmkd', locations=['mmkd.evaluation'])
# Functions a config names by type, such as a dataloader's collate_fn.
FUNCTIONS = Registry('function', parent=MMENGINE_FUNCTIONS, scope='mmkd',
                     locations=['mmkd.datasets'])
# Optimiser-wrapper constructors: one optimiser per distiller part (student, trainable teacher,
# generator), mmkd.DistillerOptimWrapperConstructor.
OPTIM_WRAPPER_CONSTRUCTORS = Registry('optimizer wrapper constructor',
                                      parent=MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS, scope='mmkd',
                                      locations=['mmkd.distillers'])
