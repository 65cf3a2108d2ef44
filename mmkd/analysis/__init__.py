"""Instruments that look inside a distillation run: what the student took from its teachers.

:mod:`mmkd.analysis.runs` loads a config and a checkpoint as the analysis tools need them
(``tools/analysis/*.py``); the other modules hold the measures: :mod:`mmkd.analysis.cka`
(representation similarity) and :mod:`mmkd.analysis.grad_shares` (each loss term's gradient
on the student, shared by ``tools/analysis/grad_shares.py`` and ``mmkd.GradientShareHook``).
The teacher-student agreement is a metric: :class:`mmkd.evaluation.TeacherStudentAgreement`.
"""
# (the function ``cka`` is not exported here: ``mmkd.analysis.cka`` stays the module)
from .cka import (CKAAccumulator, hsic, hsic1, linear_cka, minibatch_cka, point_features,
                  rbf_cka)
from .grad_shares import gradient_stats, summarise, term_gradients
from .runs import analysis_batches, analysis_runner, load_student_checkpoint

__all__ = ['analysis_batches', 'analysis_runner', 'load_student_checkpoint', 'CKAAccumulator',
           'hsic', 'hsic1', 'linear_cka', 'minibatch_cka', 'point_features', 'rbf_cka',
           'gradient_stats', 'summarise', 'term_gradients']
