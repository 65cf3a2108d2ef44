from .module_recorder import (ModuleRecorder, RecordPoint, StopForward, expand_points,
                              find_module, parse_point)

__all__ = ['ModuleRecorder', 'RecordPoint', 'StopForward', 'expand_points', 'find_module',
           'parse_point']
