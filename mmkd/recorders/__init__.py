from .module_recorder import (ModuleRecorder, RecordPoint, StopForward,
                              find_module, parse_point)

__all__ = ['ModuleRecorder', 'RecordPoint', 'StopForward', 'find_module', 'parse_point']
