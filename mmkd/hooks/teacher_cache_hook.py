"""Refuse a teacher cache built for other training batches, before the first step.

A cached teacher (``teachers.<name>.cache``, :mod:`mmkd.distillers.teacher_cache`) checks at
the distiller's build what the model side decides (teacher config and checkpoint, how it is
fed, the student's preprocessing). What decides the batches (the train dataloader with its
pipeline, sampler, batch size and workers; the seed; the loop's epochs or iterations; whether
a validation loop is built; the world size) is in the runner's config, which a model does not
see: this hook compares it with the cache's fingerprint in ``before_train`` and names every
key that differs. ``tools/train.py`` adds it whenever a teacher has a cache. Without it a
mismatched cache still fails, at the first batch it does not hold.
"""
from mmengine.dist import get_world_size
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from ..distillers.teacher_cache import check_fingerprint, run_fingerprint
from ..registry import HOOKS


@HOOKS.register_module()
class TeacherCacheHook(Hook):
    """Check every cached teacher's store against this run's batches (see the module
    docstring)."""
    priority = 'VERY_HIGH'

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        teachers = getattr(model, '_teachers', {})
        current = run_fingerprint(runner.cfg, get_world_size())
        for t in teachers.values():
            if t.kind == 'cached':
                check_fingerprint(t.run_fingerprint(), current, t.where, t.folder,
                                  'training run (its batches)')
