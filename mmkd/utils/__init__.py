from .checkpoint import (UnsafeCheckpointError, extract_student_state_dict,
                         register_safe_globals)
from .dist import setup_cpu_distributed
from .tool_config import load_tool_config

__all__ = ['UnsafeCheckpointError', 'extract_student_state_dict', 'register_safe_globals',
           'setup_cpu_distributed', 'load_tool_config']
