"""Instruments that look inside a distillation run: what the student took from its teachers.

:mod:`mmkd.analysis.runs` loads a config and a checkpoint as the analysis tools need them
(``tools/analysis/*.py``); the other modules hold the measures.
"""
from .runs import analysis_batches, analysis_runner, load_student_checkpoint

__all__ = ['analysis_batches', 'analysis_runner', 'load_student_checkpoint']
