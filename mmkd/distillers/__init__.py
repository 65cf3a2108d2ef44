from .model_builder import (build_model_in_scope, infer_model_scope,
                            load_checkpoint_strict, load_model_config,
                            resolve_config_path, without_pretrained)
from .single_teacher import DistillBlock, SingleTeacherDistiller

__all__ = ['SingleTeacherDistiller', 'DistillBlock', 'build_model_in_scope',
           'infer_model_scope', 'load_checkpoint_strict', 'load_model_config',
           'resolve_config_path', 'without_pretrained']
