from .model_builder import (build_model_in_scope, infer_model_scope,
                            load_checkpoint_strict, load_model_config,
                            resolve_config_path, without_pretrained)
from .loss_weights import (SCHEDULES, Constant, CosineDecay, LinearWarmup, LossWeight, Step,
                           build_loss_weight)
from .teachers import Normalisation, Teacher, TeacherView
from .teacher_kinds import CachedTeacher, SelfTeacher, TrainableTeacher
from .inserts import attach_inserts, build_student_with_inserts
from .distiller import DistillBlock, Distiller, NonFiniteError, SingleTeacherDistiller
from .ddp import DistillerDataParallel  # noqa: E402  (after the distiller it wraps)
from .fsdp import DistillerFSDP, DistillerFSDPHook  # noqa: E402  (after the distiller)
from .optim import DistillerOptimWrapperConstructor
from .data_free import DataFreeDistiller  # noqa: E402  (a Distiller subclass)

__all__ = ['Distiller', 'DistillerOptimWrapperConstructor', 'DataFreeDistiller', 'SingleTeacherDistiller', 'DistillBlock', 'DistillerDataParallel',
           'DistillerFSDP', 'DistillerFSDPHook',
           'NonFiniteError', 'Teacher', 'CachedTeacher', 'SelfTeacher', 'TrainableTeacher',
           'TeacherView', 'Normalisation', 'LossWeight',
           'Constant', 'LinearWarmup', 'Step', 'CosineDecay', 'SCHEDULES', 'build_loss_weight',
           'attach_inserts', 'build_student_with_inserts', 'build_model_in_scope', 'infer_model_scope', 'load_checkpoint_strict',
           'load_model_config', 'resolve_config_path', 'without_pretrained']
