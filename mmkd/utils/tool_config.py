"""What tools/train.py and tools/test.py both do to a config before building the Runner, and
how tools and tests find the runnable distiller configs of a folder."""
import glob
import os
import os.path as osp
from typing import List, Optional, Sequence, Tuple

from mmengine.config import Config
from mmengine.logging import print_log

# Transforms whose arguments give the image size, and which argument: (key, order).
# mmcv's Resize/CenterCrop and mmpretrain's RandomResizedCrop take (w, h); mmseg's and
# mmpretrain's RandomCrop take (h, w); an int is a square.
_SIZE_TRANSFORMS = {
    'Resize': ('scale', 'wh'), 'RandomResize': ('scale', 'wh'),
    'RandomChoiceResize': ('scales', 'wh'), 'ResizeEdge': ('scale', 'square'),
    'CenterCrop': ('crop_size', 'wh'), 'RandomResizedCrop': ('scale', 'wh'),
    'RandomCrop': ('crop_size', 'hw'), 'Pad': ('size', 'wh'),
}


def transform_sizes(value, order) -> List[Tuple[int, int]]:
    """Every absolute (h, w) a transform argument gives: an int is a square, a pair is read in
    ``order`` ('wh' or 'hw'), a list of scales gives each of its valid ones; relative values
    (ratios, -1) give none."""
    values = value if isinstance(value, (list, tuple)) and value and \
        isinstance(value[0], (list, tuple)) else [value]
    out = []
    for v in values:
        if isinstance(v, int) and not isinstance(v, bool):
            out.append((v, v))
        elif isinstance(v, (list, tuple)) and len(v) == 2 and all(
                isinstance(x, int) and x > 1 for x in v):
            out.append((v[1], v[0]) if order == 'wh' else (v[0], v[1]))
    return out


def _size(value, order) -> Optional[Tuple[int, int]]:
    """(h, w) from a transform argument (of a list of scales, the first), or None when it is
    not an absolute size."""
    sizes = transform_sizes(value, order)
    return sizes[0] if sizes else None


def _pipeline_size(pipeline) -> Optional[Tuple[Tuple[int, int], str]]:
    found = None
    for t in pipeline or []:
        kind = str(t.get('type', '')).split('.')[-1] if isinstance(t, dict) else ''
        nested = t.get('views') if isinstance(t, dict) else None  # mmkd.MultiViews
        if isinstance(nested, (list, tuple)) and nested and isinstance(nested[0], (list, tuple)):
            # pipelines inside a transform: the views of one batch share the first's size
            inner = _pipeline_size(nested[0])
            found = (inner[0], f'{kind} views[0] {inner[1]}') if inner else found
        elif kind in _SIZE_TRANSFORMS:
            key, order = _SIZE_TRANSFORMS[kind]
            size = _size(t.get(key), order)
            if size is not None:  # the last sizing transform decides
                found = (size, f'{kind}({key}={t.get(key)!r})')
    return found


def infer_dry_run_input_shape(cfg: Config) -> Optional[Tuple[Tuple[int, ...], str]]:
    """A dry-run batch shape ``(2, 3, H, W)`` for a distiller config, and where it came from.

    In order: the student's data preprocessor ``size`` (mmseg pads/crops every batch to it),
    then the last sizing transform (Resize, ResizeEdge, CenterCrop, RandomResizedCrop,
    RandomCrop, Pad) of the test, val and train pipelines. None when none is found.
    """
    model = cfg.get('model', {})
    for pre in (model.get('student', {}).get('data_preprocessor')
                if isinstance(model.get('student'), dict) else None,
                cfg.get('data_preprocessor')):
        if isinstance(pre, dict) and _size(pre.get('size'), 'hw'):
            h, w = _size(pre.get('size'), 'hw')
            return (2, 3, h, w), f'data_preprocessor size={pre.get("size")!r}'
    for loader in ('test_dataloader', 'val_dataloader', 'train_dataloader'):
        dataset = (cfg.get(loader) or {}).get('dataset', {}) or {}
        while isinstance(dataset, dict) and 'pipeline' not in dataset and 'dataset' in dataset:
            dataset = dataset['dataset']  # wrappers: RepeatDataset, ClassBalancedDataset...
        found = _pipeline_size(dataset.get('pipeline') if isinstance(dataset, dict) else None)
        if found:
            (h, w), what = found
            return (2, 3, h, w), f'{loader} pipeline {what}'
    return None


def is_distiller_config(model_cfg) -> bool:
    """True when a ``model`` config dict is an mmkd distiller (its ``type`` names one)."""
    return isinstance(model_cfg, dict) and 'Distiller' in str(model_cfg.get('type', ''))


def pretrained_teacher_configs(model_cfg) -> dict:
    """``{option prefix: teacher dict}`` of a distiller config's teachers that load trained
    weights (``model.teacher``, or ``model.teachers.<name>``), leaving out those that learn in
    the run (``trainable=True``) and the student itself (``teachers.self``): what a tool that
    supplies teacher checkpoints must fill in. ``{}`` for a self-distillation config."""
    if model_cfg.get('teachers'):
        entries = {f'model.teachers.{n}': t for n, t in model_cfg.teachers.items()
                   if n != 'self'}
    elif model_cfg.get('teacher'):
        entries = {'model.teacher': model_cfg.teacher}
    else:
        entries = {}
    return {k: t for k, t in entries.items() if not t.get('trainable')}


def cached_teachers(model_cfg) -> dict:
    """``{option prefix: teacher dict}`` of a distiller config's teachers read from a cache
    (``cache=DIR``, :mod:`mmkd.distillers.teacher_cache`)."""
    if not is_distiller_config(model_cfg):
        return {}
    return {k: t for k, t in pretrained_teacher_configs(model_cfg).items()
            if isinstance(t, dict) and t.get('cache') is not None}


# Shared fragments that other configs inherit (OpenMMLab's naming convention): never run.
BASE_CONFIG_PREFIX = '_base_'
_RUNNABLE_CACHE = {}


def is_runnable_distiller_config(path: str) -> bool:
    """True when the config file ``path``, after ``_base_`` inheritance, trains a distiller:
    its ``model`` is a distiller (:func:`is_distiller_config`) with at least one block.

    The decision reads the merged config, not the file's text, so a method config that only
    adds ``blocks`` to a shared base counts, and the base itself (a distiller without blocks,
    or any file named ``_base_*``, which is not even parsed) does not. The answer is cached
    per (path, modification time): parsing an OpenMMLab config reads its package's metafiles,
    about a second per config.
    """
    if osp.basename(path).startswith(BASE_CONFIG_PREFIX):
        return False
    path = osp.abspath(path)
    key = (path, os.stat(path).st_mtime_ns)
    if key not in _RUNNABLE_CACHE:
        model = Config.fromfile(path).get('model')
        _RUNNABLE_CACHE[key] = is_distiller_config(model) and bool(model.get('blocks'))
    return _RUNNABLE_CACHE[key]


def find_distiller_configs(folder: str, recursive: bool = False) -> List[str]:
    """The runnable distiller configs (:func:`is_runnable_distiller_config`) among the
    ``*.py`` files of ``folder`` (and its sub-folders with ``recursive=True``), sorted."""
    if not osp.isdir(folder):
        raise FileNotFoundError(f'find_distiller_configs: {folder!r} is not a directory.')
    pattern = osp.join(folder, '**', '*.py') if recursive else osp.join(folder, '*.py')
    return [p for p in sorted(glob.glob(pattern, recursive=recursive))
            if is_runnable_distiller_config(p)]


class ToolConfig(Config):
    """A :class:`~mmengine.config.Config` that formats its text once per content.

    MMEngine's Runner asks for ``cfg.pretty_text`` five times in a run (the log, the config
    dump, the visualizer's copy, the runtime info and each checkpoint's meta), and each is a
    yapf pass over the whole config: 0.3-0.7 s of CPU for a demo distillation config, several
    seconds in a short demo run. The text depends only on the content, so it is kept with a
    fingerprint of that content (the ``repr`` of the plain dict, well under a millisecond) and
    made again whenever the content has changed. Everything else is MMEngine's ``Config``; the
    Runner's deep copy keeps the class.
    """

    @property
    def pretty_text(self) -> str:
        key = (repr(self._cfg_dict.to_dict()), self._format_python_code)
        memo = self.__dict__.get('_mmkd_pretty_text')
        if memo is None or memo[0] != key:
            memo = (key, Config.pretty_text.fget(self))
            super(Config, self).__setattr__('_mmkd_pretty_text', memo)  # not a config key
        return memo[1]


def load_tool_config(config: str, launcher: str = 'none', cfg_options=None,
                     work_dir=None) -> Config:
    """Load ``config`` (a local path or ``'mmdet::...'``), apply ``--cfg-options``, set the
    launcher and the work dir (``./work_dirs/<config name>`` by default, as OpenMMLab does),
    and give a distiller without ``dry_run_input_shape`` one from the config's data settings
    (:func:`infer_dry_run_input_shape`). Returns a :class:`ToolConfig`."""
    from ..distillers import resolve_config_path
    cfg = Config.fromfile(resolve_config_path(config))
    object.__setattr__(cfg, '__class__', ToolConfig)  # fromfile builds a Config; only
    # pretty_text differs (Config.__setattr__ would set a config key)
    cfg.launcher = launcher
    if cfg_options is not None:
        cfg.merge_from_dict(cfg_options)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(config))[0])
    if is_distiller_config(cfg.get('model')) and cfg.model.get('dry_run_input_shape') is None:
        inferred = infer_dry_run_input_shape(cfg)
        if inferred is not None:
            cfg.model.dry_run_input_shape = inferred[0]
            print_log(f'model.dry_run_input_shape={inferred[0]} (from the {inferred[1]}); set '
                      'it in the config to choose another.', logger='current')
    if is_distiller_config(cfg.get('model')) and cfg.model.get('val_teachers') is None:
        wanted = agreement_teachers(cfg)
        if wanted is not None:
            cfg.model.val_teachers = wanted
            print_log(f'model.val_teachers={wanted} (the evaluator compares the student with '
                      'its teachers: mmkd.TeacherStudentAgreement).', logger='current')
    return cfg


def agreement_teachers(cfg: Config):
    """What ``model.val_teachers`` the config's evaluators need: None when no
    ``TeacherStudentAgreement`` reads the distiller's teachers, else True (all of them) or the
    union of the names the metrics select."""
    metrics = []
    for key in ('val_evaluator', 'test_evaluator'):
        ev = cfg.get(key)
        if isinstance(ev, dict) and 'metrics' in ev:
            ev = ev['metrics']
        metrics += [m for m in (ev if isinstance(ev, (list, tuple)) else [ev])
                    if isinstance(m, dict)
                    and str(m.get('type', '')).split('.')[-1] == 'TeacherStudentAgreement']
    names = set()
    for m in metrics:
        teachers = m.get('teachers')
        if teachers is None:
            return True
        if isinstance(teachers, (list, tuple, str)):
            names.update([teachers] if isinstance(teachers, str) else teachers)
        # a dict of teacher configs: the metric builds its own teachers
    return sorted(names) if names else None


def default_train_hooks(cfg: Config, hooks: Sequence[str] = ('mmkd.RandomStateHook',
                                                              'mmkd.RunRecordHook')) -> None:
    """Add mmkd's always-on training hooks to ``cfg.custom_hooks`` unless already there:
    the random-number states (exact resume) and the run record (export, resume checks)."""
    custom = list(cfg.get('custom_hooks') or [])
    present = {str(h.get('type')).split('.')[-1] for h in custom if isinstance(h, dict)}
    for hook in hooks:
        if hook.split('.')[-1] not in present:
            custom.append(dict(type=hook))
    cfg.custom_hooks = custom
