from .grad_share_hook import GradientShareHook
from .random_state import RandomStateHook, capture_random_state, restore_random_state
from .run_record import ObjectiveChangedError, RunRecordHook
from .teacher_cache_hook import TeacherCacheHook

__all__ = ['GradientShareHook', 'RandomStateHook', 'capture_random_state',
           'restore_random_state', 'ObjectiveChangedError', 'RunRecordHook', 'TeacherCacheHook']
