from .module_recorder import (ModuleRecorder, RecordPoint, RecordPointError, StopForward,
                              expand_points, find_module, parse_point)

__all__ = ['ModuleRecorder', 'RecordPoint', 'RecordPointError', 'StopForward', 'expand_points',
           'find_module', 'parse_point']
