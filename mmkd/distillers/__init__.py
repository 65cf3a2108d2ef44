from .model_builder import (build_model_in_scope, infer_model_scope,
                            load_checkpoint_strict, load_model_config,
                            resolve_config_path, without_pretrained)
from .single_teacher import DistillBlock, NonFiniteError, SingleTeacherDistiller
from .ddp import DistillerDataParallel  # noqa: E402  (after the distiller it wraps)

__all__ = ['SingleTeacherDistiller', 'DistillBlock', 'DistillerDataParallel', 'NonFiniteError',
           'build_model_in_scope', 'infer_model_scope', 'load_checkpoint_strict',
           'load_model_config', 'resolve_config_path', 'without_pretrained']
