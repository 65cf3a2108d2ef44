from .atomic_io import AtomicLocalBackend, atomic_write, register_atomic_local_backend
from .checkpoint import (UnsafeCheckpointError, extract_student_state_dict,
                         register_safe_globals)
from .evaluation_checkpoint import LoadTestCheckpointHook, load_test_checkpoint
from .dist import setup_cpu_distributed, slurm_to_torch_env, tear_down_process_group
from .resume import checkpoint_damage, find_resumable_checkpoint
from .tool_config import (cached_teachers, default_train_hooks, infer_dry_run_input_shape,
                          is_distiller_config, load_tool_config, pretrained_teacher_configs)

__all__ = ['AtomicLocalBackend', 'atomic_write', 'register_atomic_local_backend',
           'UnsafeCheckpointError', 'extract_student_state_dict', 'register_safe_globals',
           'LoadTestCheckpointHook', 'load_test_checkpoint', 'setup_cpu_distributed',
           'slurm_to_torch_env', 'tear_down_process_group', 'checkpoint_damage',
           'find_resumable_checkpoint', 'default_train_hooks', 'infer_dry_run_input_shape',
           'is_distiller_config', 'load_tool_config', 'pretrained_teacher_configs',
           'cached_teachers']
