"""Metrics mmkd adds to MMEngine's evaluator (registered in ``mmkd.registry.METRICS``)."""
from .agreement import TeacherStudentAgreement
from .iqa_metric import IQAMetric, srcc_plcc

__all__ = ['IQAMetric', 'srcc_plcc', 'TeacherStudentAgreement']
