"""What a checkpoint says about the run that wrote it, as plain data, never as code.

MMEngine keeps the config in each checkpoint as Python text (``meta['cfg']``), which can only be
read back by executing it: a checkpoint is a file anyone can hand over, so mmkd never executes
that text. :class:`RunRecordHook` stores instead, in ``meta['mmkd']``, what later tools need as
plain containers (dicts, lists, tuples, strings, numbers, booleans, None), which weights-only
loading reads without running anything::

    meta['mmkd'] = dict(
        format=1,
        config=<the run's whole config as data>,
        student=dict(model=<the student's model config, resolved>, scope='mmpretrain',
                     inserts=<model.student_inserts, inferred arguments filled in, or None>),
        # only when some teacher is trained in the run (trainable=True):
        trainable_teachers={name: dict(model=<its model config>, scope='mmpretrain')})

Two readers:

- ``tools/model_converters/extract_student.py`` builds the exported student's config from it
  (:func:`student_config_from_record`), and writes it as data-only Python
  (:func:`dump_data_config`);
- ``--resume``: before anything is loaded into the model or the optimiser, the distillation part
  of the checkpoint's config is compared with the current one (:func:`objective_changes`).
  A structural change (another student, method, record point, block, teacher, insert, method
  argument, or parameters of other shapes) is refused naming every change, since resuming would
  fail later on a mismatching optimiser state or, worse, continue a different objective from
  the old one's state; a change of loss weights, schedules, teacher checkpoint paths or run
  settings (``nonfinite_loss``, ``dry_run_input_shape``...) is logged as a warning.
  ``tools/train.py --resume --allow-objective-change`` turns the refusal into a warning.
"""
import ast
import logging
import numbers
from typing import Dict, List, Optional, Tuple

from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper

from ..registry import HOOKS

META_KEY = 'mmkd'
FORMAT = 1
#: Distiller settings whose change does not change what is optimised (a warning on resume).
SETTINGS = ('nonfinite_loss', 'nonfinite_skip_limit', 'dry_run_input_shape',
            'stop_teacher_early', 'eval_teacher', 'init_student_from', 'init_cfg')


def to_data(value, where: str = 'config'):
    """``value`` as plain containers (ConfigDict -> dict; tuples stay tuples). A value that is
    not data (a class or function in a pure-Python config) becomes the string
    ``'<not data: ...>'``: recorded for the reader, never rebuilt."""
    if isinstance(value, dict):
        return {k: to_data(v, f'{where}.{k}') for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        items = [to_data(v, f'{where}[{i}]') for i, v in enumerate(value)]
        return tuple(items) if isinstance(value, tuple) else items
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, numbers.Number):  # numpy scalars
        return value.item() if hasattr(value, 'item') else float(value)
    return f'<not data: {type(value).__module__}.{type(value).__qualname__}>'


def _distiller(runner):
    from ..distillers import Distiller
    model = runner.model.module if is_model_wrapper(runner.model) else runner.model
    return model if isinstance(model, Distiller) else None


def run_record(runner) -> dict:
    """``meta['mmkd']`` for the runner's current run (module docstring)."""
    record = dict(format=FORMAT, config=to_data(runner.cfg.to_dict()))
    distiller = _distiller(runner)
    if distiller is not None:
        record['student'] = dict(model=to_data(distiller.student_config),
                                 scope=distiller.student_scope,
                                 inserts=to_data(distiller.student_inserts))
        # Teachers trained in the run (online learning): what exports each alone.
        trainable = {name: dict(model=to_data(t.config), scope=t.scope)
                     for name, t in distiller._teachers.items() if t.trainable}
        if trainable:
            record['trainable_teachers'] = trainable
    return record


# ---------------------------------------------------------------------- resume
def _diff(old, new, path: str, out: List[Tuple[str, object, object]]):
    if isinstance(old, dict) and isinstance(new, dict):
        for key in list(old) + [k for k in new if k not in old]:
            _diff(old.get(key, '<absent>'), new.get(key, '<absent>'), f'{path}.{key}', out)
    elif isinstance(old, (list, tuple)) and isinstance(new, (list, tuple)) and \
            len(old) == len(new):
        for i, (a, b) in enumerate(zip(old, new)):
            _diff(a, b, f'{path}[{i}]', out)
    elif old != new:
        out.append((path, old, new))


def _is_setting(path: str) -> bool:
    """Changes that keep the objective's structure: loss weights and their schedules, teacher
    checkpoint paths and caches (a cache holds the values the live teacher gives: its
    fingerprint is checked when it is opened), the distiller's run settings
    (:data:`SETTINGS`)."""
    parts = path.split('.')
    if len(parts) >= 4 and parts[1] == 'blocks' and parts[3].startswith('loss_weight'):
        return True
    if parts[1:2] == ['teacher'] and parts[2:3] in (['checkpoint'], ['cache']):
        return True
    if parts[1:2] == ['teachers'] and parts[3:4] in (['checkpoint'], ['cache']):
        return True
    return len(parts) >= 2 and parts[1].split('[')[0] in SETTINGS


def objective_changes(saved: dict, current: dict) -> Dict[str, List[str]]:
    """``{'structural': [...], 'settings': [...]}``: each change between two runs' distiller
    configs (``model``; the student compared as resolved), as ``'path: old -> new'``."""
    changes: List[Tuple[str, object, object]] = []
    saved_model = dict(saved['config'].get('model') or {})
    current_model = dict(current['config'].get('model') or {})
    # The student as built (a config path resolves to its model dict), not as written.
    for record, model in ((saved, saved_model), (current, current_model)):
        if record.get('student'):
            model['student'] = record['student']['model']
    _diff(saved_model, current_model, 'model', changes)
    out = dict(structural=[], settings=[])
    for path, old, new in changes:
        text = f'{path}: {_short(old)} -> {_short(new)}'
        out['settings' if _is_setting(path) else 'structural'].append(text)
    return out


def _short(value, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + '...'


def state_shape_changes(checkpoint_state: dict, model) -> List[str]:
    """Parameters and buffers the model and the checkpoint hold under other names or shapes."""
    own = model.state_dict()
    saved = {k[len('module.'):] if k.startswith('module.') else k: v
             for k, v in checkpoint_state.items()}
    missing = sorted(set(own) - set(saved))
    extra = sorted(set(saved) - set(own))
    shaped = sorted(k for k in set(own) & set(saved) if hasattr(saved[k], 'shape')
                    and tuple(saved[k].shape) != tuple(own[k].shape))
    out = []
    if missing:
        out.append(f'{len(missing)} tensor(s) the checkpoint lacks: {missing[:4]}')
    if extra:
        out.append(f'{len(extra)} tensor(s) the model lacks: {extra[:4]}')
    if shaped:
        out.append(f'{len(shaped)} of another shape: ' + ', '.join(
            f'{k} {tuple(saved[k].shape)} -> {tuple(own[k].shape)}' for k in shaped[:4]))
    return out


class ObjectiveChangedError(RuntimeError):
    """``--resume`` of a checkpoint whose distillation objective differs structurally."""


@HOOKS.register_module()
class RunRecordHook(Hook):
    """Stores :func:`run_record` in every checkpoint and checks it on resume (module docstring).

    Args:
        allow_objective_change (bool): on resume, log structural changes as a warning instead
            of refusing (``tools/train.py --allow-objective-change``). Default False.
    """
    priority = 'VERY_LOW'

    def __init__(self, allow_objective_change: bool = False):
        self.allow_objective_change = bool(allow_objective_change)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint.setdefault('meta', {})[META_KEY] = run_record(runner)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if not getattr(runner, '_resume', False) or _distiller(runner) is None:
            return  # load_from and tools/test.py may load any compatible weights
        saved = (checkpoint.get('meta') or {}).get(META_KEY)
        if not isinstance(saved, dict) or saved.get('format') != FORMAT or \
                not isinstance(saved.get('config'), dict):
            print_log('Resuming from a checkpoint without an mmkd run record (written by '
                      'another tool or an older mmkd): its distillation objective cannot be '
                      'compared with this config.', logger='current', level=logging.WARNING)
            return
        changes = objective_changes(saved, run_record(runner))
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        shapes = state_shape_changes(checkpoint.get('state_dict', {}), model)
        structural = changes['structural'] + [f'parameters: {s}' for s in shapes]
        if changes['settings']:
            print_log('Resuming with changed loss weights or settings (the optimiser state '
                      'is kept): ' + '; '.join(changes['settings']) + '.', logger='current',
                      level=logging.WARNING)
        if not structural:
            return
        text = ('The checkpoint was trained for another distillation objective than this '
                'config describes: ' + '; '.join(structural) + '.')
        if self.allow_objective_change:
            print_log(text + ' Resuming anyway (allow_objective_change).', logger='current',
                      level=logging.WARNING)
            return
        raise ObjectiveChangedError(
            text + ' Resuming would continue the old objective\'s optimiser state on another '
            'one. Train it in a new work dir (or with load_from for the weights), or resume '
            'with --allow-objective-change if the change is intended.')


# ---------------------------------------------------------------------- export
#: Top-level keys of a distillation run that the exported student's config does not keep:
#: what the Runner gets from the command line, and mmkd's own distillation settings.
RUN_ONLY_KEYS = ('load_from', 'resume', 'work_dir', 'launcher', 'student_baseline',
                 'letkd_templates')
#: Hooks tools/train.py adds to every run (it adds them again when the student is trained).
TRAINING_HOOKS = ('RandomStateHook', 'RunRecordHook')


def _is_distillation_piece(value) -> bool:
    """A block (student, teacher, method), an insert (after, module) or a teacher (checkpoint
    and config or model) written as a top-level variable, or a dict of them."""
    if not isinstance(value, dict) or not value:
        return False
    keys = set(value)
    if {'student', 'teacher', 'method'} <= keys or keys == {'after', 'module'} or (
            'checkpoint' in keys and keys & {'config', 'model'}):
        return True
    return all(_is_distillation_piece(v) for v in value.values())


def student_config_from_record(record: dict, part: str = 'student') -> dict:
    """The exported student's config (data): the run's config with ``model`` replaced by the
    student (with its inserts, ``mmkd.StudentWithInserts``, when it has any), and without what
    only the distillation used: :data:`RUN_ONLY_KEYS`, top-level helper variables holding a
    block, an insert or a teacher (written as a variable and used in ``model``), mmkd's
    distillation wrapper and training hooks. An ``optim_wrapper`` with one optimiser per part
    (``mmkd.DistillerOptimWrapperConstructor``) becomes the exported ``part``'s own."""
    config = dict(record['config'])
    optim = config.get('optim_wrapper')
    if isinstance(optim, dict) and 'DistillerOptimWrapperConstructor' in str(
            optim.get('constructor')) and isinstance(optim.get(part), dict):
        config['optim_wrapper'] = dict(optim[part])
    for key in list(config):
        if key in RUN_ONLY_KEYS or (key != 'model' and _is_distillation_piece(config[key])):
            config.pop(key)
    wrapper = config.get('model_wrapper_cfg')
    if isinstance(wrapper, dict) and 'Distiller' in str(wrapper.get('type', '')):
        config.pop('model_wrapper_cfg')
    hooks = [h for h in config.get('custom_hooks') or []
             if not (isinstance(h, dict) and str(h.get('type')).split('.')[-1] in TRAINING_HOOKS)]
    if 'custom_hooks' in config:
        config['custom_hooks'] = hooks
    student = record['student']
    if student.get('inserts'):
        model = dict(type='mmkd.StudentWithInserts', model=student['model'],
                     inserts=student['inserts'])
        if student.get('scope'):
            model['scope'] = student['scope']
    else:
        model = dict(student['model'])
    config['model'] = model
    if student.get('scope') and not config.get('default_scope'):
        config['default_scope'] = student['scope']
    return config


# Python syntax a config made only of data may use: assignments of literals and dict(...) calls.
_DATA_NODES = (ast.Module, ast.Assign, ast.Name, ast.Store, ast.Load, ast.Constant, ast.Dict,
               ast.List, ast.Tuple, ast.keyword, ast.UnaryOp, ast.USub, ast.UAdd, ast.Expr)


def check_data_only(text: str, what: str) -> None:
    """Raise ValueError unless ``text`` is Python made only of data: names assigned literals,
    lists, tuples, dicts and ``dict(key=...)`` calls (nothing that runs code when executed)."""
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Call):
            if not (isinstance(node.func, ast.Name) and node.func.id == 'dict'
                    and not node.args):
                raise ValueError(f'{what}: refusing to write a call of {ast.unparse(node.func)} '
                                 'in a config made from a checkpoint (data only).')
        elif not isinstance(node, _DATA_NODES):
            raise ValueError(f'{what}: refusing to write {type(node).__name__} syntax in a '
                             'config made from a checkpoint (data only).')
        if isinstance(node, ast.Name) and not (node.id == 'dict' or isinstance(node.ctx,
                                                                                 ast.Store)):
            raise ValueError(f'{what}: refusing to write a reference to the name {node.id!r} '
                             'in a config made from a checkpoint (data only).')


def _check_keys(value, what: str, where: str = 'config') -> None:
    """MMEngine's config printer writes a key that is not an identifier as ``'key'`` without
    escaping it: a key holding a quote could end the string and write code."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, (str, int)) or (isinstance(key, str) and (
                    not key.isprintable() or any(c in key for c in '\'"\\'))):
                raise ValueError(f'{what}: refusing to write the key {key!r} at {where} in a '
                                 'config made from a checkpoint (data only: plain keys).')
            _check_keys(item, what, f'{where}.{key}')
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_keys(item, what, f'{where}[{i}]')


#: Packages whose modules a config made from a checkpoint may make MMEngine import (by
#: ``custom_imports``, ``default_scope``, a ``scope`` or a ``'scope.Type'`` name, all of which
#: import ``<package>[.registry]`` when the config is run).
KNOWN_PACKAGES = ('mmkd', 'mmengine', 'mmcv', 'mmpretrain', 'mmcls', 'mmdet', 'mmseg')


def imported_modules(value, found: Optional[set] = None) -> set:
    """Modules running the config ``value`` makes MMEngine import (see :data:`KNOWN_PACKAGES`)."""
    found = set() if found is None else found
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ('default_scope', 'scope') and isinstance(item, str):
                found.add(item)
            elif key == 'type' and isinstance(item, str) and '.' in item:
                found.add(item.split('.')[0])
            elif key == 'custom_imports' and isinstance(item, dict):
                imports = item.get('imports', [])
                found.update([imports] if isinstance(imports, str) else
                             [m for m in imports if isinstance(m, str)])
            imported_modules(item, found)
    elif isinstance(value, (list, tuple)):
        for item in value:
            imported_modules(item, found)
    return found


def dump_data_config(config: dict, path: str, header: Optional[str] = None) -> None:
    """Write ``config`` (data) as an MMEngine ``.py`` config, checked to hold only data and to
    import nothing outside the OpenMMLab packages and mmkd when it is run."""
    from mmengine.config import Config

    from ..utils.atomic_io import atomic_write
    _check_keys(config, path)
    foreign = sorted(m for m in imported_modules(config)
                     if m.split('.')[0] not in KNOWN_PACKAGES)
    if foreign:
        raise ValueError(f'{path}: the config recorded in the checkpoint would import '
                         f'{foreign} when run (custom_imports, a scope or a "scope.Type" '
                         f'name); a config made from a checkpoint imports only '
                         f'{list(KNOWN_PACKAGES)}. Give the distillation config you trained '
                         'with instead (--config CONFIG).')
    try:
        text = Config(config).pretty_text
    except SyntaxError as e:
        raise ValueError(f'{path}: refusing to write a config that does not print as data '
                         f'only ({e.msg.splitlines()[0]}).') from None
    check_data_only(text, path)
    atomic_write((header or '') + text, path, 'w', encoding='utf-8')
