"""Load the checkpoint given to ``tools/test.py``, whichever kind the config builds.

Two mistakes used to score a random-weight model with exit code 0 (MMEngine's Runner loads
non-strictly and only prints the mismatching keys): testing a distillation checkpoint
(``student.*``/``methods.*`` keys) with the student's plain base config (the export step
forgotten), and testing an exported plain checkpoint with the distillation config. Both are
now recognised and the student part is loaded, saying so; any other key mismatch that would
leave model weights uninitialised is an error.
"""
import logging
from typing import Dict

from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.runner.checkpoint import _load_checkpoint, load_state_dict

from .checkpoint import extract_student_state_dict

EXPORT_TOOL = 'tools/model_converters/extract_student.py'


def _state_dict(checkpoint) -> Dict:
    state = checkpoint.get('state_dict', checkpoint) if isinstance(checkpoint, dict) else {}
    return {k[len('module.'):] if k.startswith('module.') else k: v for k, v in state.items()}


def is_distillation_state_dict(state: Dict) -> bool:
    return any(k.startswith(('student.', 'methods.')) for k in state)


def load_test_checkpoint(runner, filename: str) -> None:
    """Load ``filename`` into ``runner.model`` for testing (see the module docstring).

    Raises a RuntimeError naming the model keys the checkpoint lacks or holds with another
    shape (they would stay at their random initial values), with the likely cause.
    """
    from ..distillers import Distiller
    model = runner.model.module if is_model_wrapper(runner.model) else runner.model
    checkpoint = _load_checkpoint(filename, map_location='cpu')
    runner.call_hook('after_load_checkpoint', checkpoint=checkpoint)
    state = _state_dict(checkpoint)
    distiller = isinstance(model, Distiller)
    target = model
    if not distiller and is_distillation_state_dict(state):
        state = extract_student_state_dict(state)
        print_log(f'{filename} is a distillation checkpoint (student.*/methods.* keys) and the '
                  f'config builds a plain {type(model).__name__}: testing its student '
                  f'({len(state)} student.* tensors; methods.* ignored). Export it once with '
                  f'`python {EXPORT_TOOL} {filename} student.pth` to test or deploy the '
                  'student alone.', logger='current', level=logging.WARNING)
    elif distiller and not is_distillation_state_dict(state) and state:
        target = model.student  # a plain (exported) student checkpoint
        print_log(f'{filename} is a plain {type(model.student).__name__} checkpoint (no '
                  'student.* keys) and the config builds a distiller: loading it into the '
                  'distiller\'s student.', logger='current', level=logging.WARNING)
    elif distiller:
        # The methods are not needed to test the student, and a frozen teacher loads its own;
        # a trainable teacher under test (tools/test.py --teacher NAME) is in the checkpoint.
        name = model._eval_teacher_name()
        if name is not None and model.teacher_info(name).trainable:
            prefix, target = f'trainable_teachers.{name}.', model.trainable_teachers[name]
        else:
            prefix, target = 'student.', model.student
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    own = target.state_dict()
    inserted = sorted(k for k in set(state) - set(own) if k.startswith('kd_inserts.'))
    if inserted:
        raise RuntimeError(
            f'{filename} holds a student with inserted layers ({inserted[:3]} ...), part of '
            'its predictions, but the config builds the student without them. Test it with '
            f'its distillation config, or with the config {EXPORT_TOOL} writes beside the '
            'exported weights (model type mmkd.StudentWithInserts).')
    missing = sorted(set(own) - set(state))
    mis_shaped = sorted(k for k in set(own) & set(state) if hasattr(state[k], 'shape')
                        and tuple(state[k].shape) != tuple(own[k].shape))
    if missing or mis_shaped:
        def show(keys):
            return f'{keys[:6]}{" ..." if len(keys) > 6 else ""}'
        raise RuntimeError(
            f'{filename} does not hold {len(missing) + len(mis_shaped)} of the {len(own)} '
            f'weights of the model to test ({type(target).__name__}): missing {len(missing)} '
            f'{show(missing)}, shape mismatch {len(mis_shaped)} {show(mis_shaped)}. Testing '
            'would score randomly initialised weights. Is it a checkpoint of another model? '
            'A distillation checkpoint is tested with its distillation config, or exported '
            f'with {EXPORT_TOOL} for the plain one.')
    load_state_dict(target, state, strict=False, logger='current')
    print_log(f'Load checkpoint from {filename}', logger='current')


class LoadTestCheckpointHook(Hook):
    """Loads the checkpoint of ``tools/test.py`` with :func:`load_test_checkpoint` in
    ``before_run``, where the Runner itself would load ``load_from`` (register it with priority
    'LOWEST' so hooks that prepare for loading, e.g. EMAHook, come first)."""

    def __init__(self, filename: str):
        self.filename = filename

    def before_run(self, runner):
        load_test_checkpoint(runner, self.filename)
