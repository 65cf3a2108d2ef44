"""Check a distillation config before training: build the distiller (the dry run included)
and print what every block reads and does.

    python tools/analysis/check_config.py CONFIG [--random-teachers] [--cfg-options K=V ...]
        [--input-shape train | H,W | N,C,H,W] [--json OUT] [--debug]
    python tools/analysis/check_config.py configs --exclude 'configs/demo/*' --random-teachers \
        --input-shape train          # every runnable distiller config under a folder

The config is loaded as tools/train.py loads it (``--cfg-options``; a distiller without
``dry_run_input_shape`` gets the one train.py infers from the pipeline), then the distiller is
built as the Runner builds it, which runs every model once on a random batch. Per block it
prints the student and teacher record points as resolved (wildcards expanded) with the shapes
of their values, the method with its arguments (given and defaults) and parameter count, and
the loss-weight schedule; per teacher its input view (normalisation, privileged inputs); then
the parameter counts and the build time. ``--random-teachers`` builds each teacher with random
weights instead of loading its checkpoint (nothing is downloaded; letKD templates, which are
made from a trained teacher, are random too), so a config can be checked before its teachers
exist. Any problem (the config, the build, a non-finite dry-run value) is printed as one
message and the exit status is 1; ``--debug`` shows the traceback.
"""
import argparse
import contextlib
import copy
import fnmatch
import gc
import inspect
import io
import json
import logging
import os
import os.path as osp
import re
import sys
import tempfile
import time
from typing import Dict, List, Optional, Tuple

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmengine.config import DictAction  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Check a distillation config: build the distiller (with its dry run) and '
                    'print each block\'s record points, value shapes, method arguments, '
                    'parameter counts and loss weight, the teachers\' input views and the build '
                    'time. Exit status 1 on any problem.')
    parser.add_argument('configs', nargs='+', metavar='CONFIG',
                        help='config file (a local path or "mmdet::..."), or a folder: every '
                        'runnable distiller config under it, recursively, with a summary table')
    parser.add_argument('--random-teachers', action='store_true',
                        help='build each teacher with random weights instead of loading its '
                        'checkpoint (no download; revise_keys unused; letKD templates random, '
                        'of the widths the config implies)')
    parser.add_argument('--input-shape', metavar='SHAPE',
                        help='the dry-run batch: "train" for the batch the train pipeline and '
                        'the data preprocessor give (crop, batch augments, padding), "H,W" or '
                        '"N,C,H,W". Default: as tools/train.py (model.dry_run_input_shape, or '
                        'inferred from the pipeline)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings in the config, key=value (as tools/train.py)')
    parser.add_argument('--exclude', action='append', default=[], metavar='GLOB',
                        help='with a folder: skip configs whose path matches (fnmatch), e.g. '
                        '"configs/demo/*"; repeatable')
    parser.add_argument('--json', metavar='OUT', help='also write the reports to this JSON file')
    parser.add_argument('--verbose', action='store_true',
                        help='show MMEngine\'s INFO log lines of the build (warnings always show)')
    parser.add_argument('--debug', action='store_true',
                        help='raise the first problem with its traceback instead of printing it')
    return parser.parse_args(argv)


if __name__ == '__main__':
    # --help and usage errors answer before torch and the OpenMMLab packages are imported.
    ARGS = parse_args()

import torch  # noqa: E402
from mmengine.logging import MMLogger  # noqa: E402
from mmengine.registry import MODELS as ROOT_MODELS  # noqa: E402
from mmengine.registry import DefaultScope  # noqa: E402

import mmkd  # noqa: E402,F401  (registers modules, safe checkpoint loading)
from mmkd.distillers import (build_model_in_scope, infer_model_scope,  # noqa: E402
                             load_model_config, without_pretrained)
from mmkd.distillers.teachers import split_teacher_point  # noqa: E402
from mmkd.recorders import parse_point  # noqa: E402
from mmkd.utils import (infer_dry_run_input_shape, load_tool_config,  # noqa: E402
                        pretrained_teacher_configs)
from mmkd.utils.arguments import argument_schema  # noqa: E402
from mmkd.utils.tool_config import (_SIZE_TRANSFORMS, find_distiller_configs,  # noqa: E402
                                    is_distiller_config, transform_sizes)

LETKD_METHODS = ('LetKD', 'LetKDSubclass')


# ---------------------------------------------------------------------- the dry-run batch
def _train_pipeline(cfg) -> list:
    dataset = (cfg.get('train_dataloader') or {}).get('dataset', {}) or {}
    while isinstance(dataset, dict) and 'pipeline' not in dataset:
        inner = dataset.get('dataset', (dataset.get('datasets') or [None])[0])
        if not isinstance(inner, dict):
            break
        dataset = inner  # RepeatDataset, ClassBalancedDataset, ConcatDataset (the first)
    return list(dataset.get('pipeline') or []) if isinstance(dataset, dict) else []


def _type_name(t) -> str:
    return str(t.get('type', '')).split('.')[-1] if isinstance(t, dict) else ''


def training_input_shape(cfg) -> Optional[Tuple[Tuple[int, int, int, int], str]]:
    """The largest training batch (2, C, H, W) the config gives, and where it comes from.

    In order: the student's data preprocessor's batch augments that fix the size (mmdet's
    ``BatchFixedSizePad`` of large-scale-jitter configs, ``BatchSyncRandomResize``'s upper
    bound) or its ``size`` (mmseg pads/crops every batch to it); else the last sizing
    transform of the train pipeline (its largest scale: ``Resize(scale=(1333, 800))`` keeps
    the ratio within 1333 x 800), padded up to the preprocessor's size divisor. Not what
    tools/train.py infers (that prefers the test pipeline, whose size may differ).
    """
    model = cfg.get('model', {})
    student = model.get('student') if isinstance(model.get('student'), dict) else {}
    # The student's (a distiller's student, or a plain model), else the top-level one.
    pre = (student.get('data_preprocessor') or model.get('data_preprocessor')
           or cfg.get('data_preprocessor') or {})
    mean = pre.get('mean')
    channels = len(mean) if isinstance(mean, (list, tuple)) and len(mean) > 1 else 3
    for aug in pre.get('batch_augments') or []:
        kind = _type_name(aug)
        if kind == 'BatchFixedSizePad' and transform_sizes(aug.get('size'), 'hw'):
            h, w = transform_sizes(aug.get('size'), 'hw')[0]
            return (2, channels, h, w), f'data_preprocessor batch_augments {kind}(size=' \
                                        f'{aug.get("size")!r})'
        if kind == 'BatchSyncRandomResize' and aug.get('random_size_range'):
            side = max(aug['random_size_range'])
            return (2, channels, side, side), f'data_preprocessor batch_augments {kind}(' \
                                              f'random_size_range={aug["random_size_range"]!r})'
    if transform_sizes(pre.get('size'), 'hw'):
        h, w = transform_sizes(pre.get('size'), 'hw')[0]
        return (2, channels, h, w), f'data_preprocessor size={pre.get("size")!r}'
    found = None
    for t in _train_pipeline(cfg):
        kind = _type_name(t)
        if kind in _SIZE_TRANSFORMS:
            key, order = _SIZE_TRANSFORMS[kind]
            sizes = transform_sizes(t.get(key), order)
            if sizes:  # the last sizing transform decides; of a list of scales, the largest
                found = (max(sizes, key=lambda s: s[0] * s[1]), f'{kind}({key}={t.get(key)!r})')
    if found is None:
        return None
    (h, w), what = found
    divisor = pre.get('pad_size_divisor') or pre.get('size_divisor') or 1
    h, w = -(-h // divisor) * divisor, -(-w // divisor) * divisor
    padded = f', padded to a multiple of {divisor}' if divisor > 1 else ''
    return (2, channels, h, w), f'train_dataloader pipeline {what}{padded}'


def choose_input_shape(cfg, spec: Optional[str]) -> str:
    """Set ``cfg.model.dry_run_input_shape`` as ``--input-shape`` asks; say where it came
    from."""
    model = cfg.model
    if spec is None:
        shape = tuple(model.get('dry_run_input_shape') or ())
        inferred = infer_dry_run_input_shape(cfg)
        if inferred is not None and tuple(inferred[0]) == shape:
            # load_tool_config fills it only when the config does not set it: either way,
            # this is the batch tools/train.py uses
            return (f"as tools/train.py: the config's model.dry_run_input_shape, or the "
                    f'{inferred[1]}')
        return ('model.dry_run_input_shape in the config' if shape else
                "the distiller's default (no size found in the config)")
    if spec == 'train':
        found = training_input_shape(cfg)
        if found is None:
            raise ValueError('--input-shape train: no training size found in the config (no '
                             'sizing transform in the train pipeline, no data preprocessor '
                             'size or batch augment): give --input-shape N,C,H,W.')
        model.dry_run_input_shape = found[0]
        return f'the training batch: {found[1]}'
    try:
        dims = tuple(int(d) for d in spec.split(','))
    except ValueError:
        dims = ()
    if len(dims) not in (2, 4):
        raise ValueError(f'--input-shape {spec!r}: give "train", "H,W" or "N,C,H,W".')
    if len(dims) == 2:
        current = tuple(model.get('dry_run_input_shape') or (2, 3))
        dims = current[:2] + dims
    model.dry_run_input_shape = dims
    return '--input-shape'


# ---------------------------------------------------------------------- random teachers
def _teacher_entries(model_cfg) -> Dict[str, dict]:
    """``name -> teacher dict`` of a distiller config ('teacher' for the one-teacher form; not
    ``teachers.self``, the student itself)."""
    if model_cfg.get('teachers'):
        return {n: t for n, t in model_cfg.teachers.items() if n != 'self'}
    return {'teacher': model_cfg.teacher} if model_cfg.get('teacher') else {}


def _random_teacher(teacher: dict, seed: int = 0):
    """The teacher's model as its config builds it, with random weights (no pretrained
    download)."""
    source = teacher.get('config', teacher.get('model'))
    cfg, file_scope = load_model_config(source)
    cfg = without_pretrained(cfg)
    torch.manual_seed(seed)
    return build_model_in_scope(cfg, infer_model_scope(cfg, teacher.get('scope') or file_scope))


def _point_channels(model, point: str, shape) -> int:
    """The channels (dim 1) a module's output has on a random batch of ``shape``."""
    name = parse_point(point).module
    found = {}
    hook = model.get_submodule(name).register_forward_hook(
        lambda module, args, out: found.setdefault('c', out.shape[1]))
    try:
        with torch.no_grad():
            model.eval()
            model(torch.randn(1, *shape[1:]), mode='tensor')
    except Exception:
        if 'c' not in found:  # a failure after the point has been recorded does not matter
            raise
    finally:
        hook.remove()
    return found['c']


def _random_letkd_templates(model_cfg, name: str, block: dict, shape, out: str) -> str:
    """A letKD templates file of the widths the config implies (K: the student's KDLayer's
    num_templates; C: the teacher point's channels), random instead of made from a trained
    teacher."""
    method = block['method']
    kind = method if isinstance(method, str) else method.get('type')
    insert = str(block['student']).split('.')
    if len(insert) < 3 or insert[0] != 'kd_inserts':
        raise ValueError(f'--random-teachers: block {name!r} ({kind}) reads the student at '
                         f'{block["student"]!r}, not at a KDLayer\'s scores '
                         '("kd_inserts.<name>.scores"): cannot size random templates.')
    k = model_cfg.student_inserts[insert[1]].module.num_templates
    teachers = _teacher_entries(model_cfg)
    tname, point = split_teacher_point(block['teacher'], list(teachers), name)
    c = _point_channels(_random_teacher(teachers[tname]), point, shape)
    if kind == 'LetKD':
        data = dict(kind='kmeans', centres=torch.randn(k, c))
    else:
        m = 8 if k % 8 == 0 else 1
        n = min(k // m, c)  # LDA dimensions: at most classes (- 1), at most channels
        data = dict(kind='subclass', lda_mean=torch.zeros(c), lda_scalings=torch.randn(c, n),
                    centres=torch.randn(k, n), score_matrix=torch.full((k, k), 1.0 / k),
                    num_subclasses=m)
    torch.save(data, out)
    return out


def use_random_teachers(cfg, tmpdir: str, cache: Dict[str, str]) -> Dict[str, str]:
    """Point every teacher of ``cfg.model`` at a checkpoint of random weights (one per teacher
    architecture, kept in ``cache`` across configs) and every letKD block at random
    templates; return what each replaced, for the report."""
    model_cfg = cfg.model
    replaced = {}
    for key, teacher in pretrained_teacher_configs(model_cfg).items():
        name = key.split('.')[-1]  # (a trainable teacher trains from its own start)
        source = teacher.get('config', teacher.get('model'))
        key = json.dumps([str(teacher.get('scope')), source], sort_keys=True, default=str)
        if key not in cache:
            cache[key] = osp.join(tmpdir, f'teacher{len(cache)}.pth')
            model = _random_teacher(teacher)
            torch.save(dict(state_dict=model.state_dict(), meta=dict()), cache[key])
            del model
        replaced[f'teacher {name!r}'] = str(teacher.get('checkpoint'))
        teacher.checkpoint = cache[key]
        teacher.pop('revise_keys', None)  # the random checkpoint has the model's own keys
    shape = model_cfg.get('dry_run_input_shape') or (2, 3, 224, 224)
    for name, block in (model_cfg.get('blocks') or {}).items():
        method = block.get('method') if isinstance(block, dict) else None
        kind = method if isinstance(method, str) else (method or {}).get('type')
        if str(kind).split('.')[-1] in LETKD_METHODS and isinstance(method, dict):
            out = osp.join(tmpdir, f'templates{len(os.listdir(tmpdir))}.pth')
            replaced[f'block {name!r} templates'] = str(method.get('templates'))
            method.templates = _random_letkd_templates(model_cfg, name, block, shape, out)
    return replaced


# ---------------------------------------------------------------------- build and describe
def build_distiller(cfg):
    """Build ``cfg.model`` as MMEngine's Runner does (its default scope; the config's top-level
    ``data_preprocessor`` handed to the model)."""
    model_cfg = cfg.model.copy()
    if cfg.get('data_preprocessor') is not None:
        model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope') or 'mmkd'):
        return ROOT_MODELS.build(model_cfg)


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def method_arguments(method, spec) -> Tuple[dict, dict]:
    """(given, defaults): the method's constructor arguments from the config, and every other
    one with its default (read from the signatures along its ``**kwargs`` chain)."""
    given = {} if isinstance(spec, str) else {k: v for k, v in dict(spec).items()
                                              if k != 'type'}
    params, _, _ = argument_schema(type(method))
    defaults = {n: p.default for n, p in params.items()
                if n not in given and n != 'init_cfg' and p.default is not inspect.Parameter.empty}
    return given, defaults


def describe_view(view) -> dict:
    """What a teacher is fed (its TeacherView), as data and in words."""
    norm = view.teacher.describe() if view.teacher is not None else None
    student = view.student.describe() if view.student is not None else None
    if not isinstance(view.inputs, str):
        text = (f'{view.sources} concatenated on channels (the batch un-normalised, '
                f'data-sample fields raw), normalised with {norm or "nothing"}')
    elif view.inputs != 'inputs':
        text = f'data_samples[i].{view.inputs} (raw), normalised with {norm or "nothing"}'
    elif view.identity:
        text = f"the student's batch as it is (normalisation {student or 'none'})"
    else:
        text = f"the student's batch re-normalised from {student} to {norm}"
    return dict(inputs=list(view.sources), privileged=list(view.fields), normalisation=norm,
                student_normalisation=student, text=text)


def _points_with_shapes(points: List[str], shapes: list) -> List[Tuple[str, list]]:
    """Each point with the shapes of its value when they can be told apart (one tensor per
    point, or one point); else the points, then all the shapes."""
    if len(points) == len(shapes):
        return [(p, [s]) for p, s in zip(points, shapes)]
    if len(points) == 1:
        return [(points[0], shapes)]
    return [(p, []) for p in points] + [('(values)', shapes)]


def describe_distiller(distiller, methods: dict) -> dict:
    """The report's data: the models, their views and counts, and per block what it reads
    (``methods``: each block's ``method`` as the config gives it)."""
    sole = list(distiller.teachers) == ['teacher']
    teachers = {}
    for name in distiller.teachers:
        t = distiller.teacher_info(name)
        teachers[name] = dict(model=type(t.model).__name__, scope=t.scope, source=t.source,
                              checkpoint=str(t.checkpoint), parameters=count(t.model),
                              view=describe_view(t.view), kind=t.kind)
    blocks = {}
    for name, block in distiller.blocks.items():
        given, defaults = method_arguments(block.method, methods[name])
        teacher_points = [str(p) if sole else f'{t}:{p}' for t, p in block.teacher_points]
        blocks[name] = dict(
            student=_points_with_shapes([str(p) for p in block.student_points],
                                        block.built_shapes['student']),
            teacher=_points_with_shapes(teacher_points, block.built_shapes['teacher']),
            method=block.method_type, given=given, defaults=defaults,
            method_parameters=count(block.method), loss_weight=repr(block.loss_weight))
    return dict(student=dict(model=type(distiller.student).__name__,
                             scope=distiller.student_scope,
                             parameters=count(distiller.student)),
                teachers=teachers, blocks=blocks,
                method_parameters=sum(b['method_parameters'] for b in blocks.values()))


#: What MMEngine prints (a bare print) for every checkpoint it loads: the report names each
#: teacher's checkpoint already, and with --random-teachers the path is a temporary file.
_CHECKPOINT_LINE = re.compile(r'^Loads checkpoint by \w+ backend from path: ')


@contextlib.contextmanager
def report_printed_lines():
    """What the build prints (``print``, not the logger), shown once it is done, less
    MMEngine's line per loaded checkpoint."""
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            yield
    finally:
        kept = [line for line in printed.getvalue().splitlines(keepends=True)
                if not _CHECKPOINT_LINE.match(line)]
        sys.stdout.write(''.join(kept))


_MMENGINE_PREFIX = re.compile(r'^(class `\w+` in [\w./\\-]+\.py: )+')


def error_text(e: BaseException) -> str:
    """The exception as one plain line: its type and message, without the
    ``class `X` in file.py:`` prefixes MMEngine's registry adds when it re-raises."""
    text = e.args[0] if len(e.args) == 1 and isinstance(e.args[0], str) else str(e)
    return f'{type(e).__name__}: {_MMENGINE_PREFIX.sub("", text)}'


def check(path: str, args, tmpdir: str, cache: Dict[str, str]) -> dict:
    """Load, build and describe one config; a report dict (``ok``, and ``error`` when not)."""
    report = dict(config=path, ok=False)
    try:
        cfg = load_tool_config(path, cfg_options=args.cfg_options)
        if not is_distiller_config(cfg.get('model')):
            raise ValueError(f'{path}: its model ({cfg.get("model", {}).get("type")!r}) is not '
                             'an mmkd distiller (model.type="mmkd.Distiller").')
        report['input_shape_source'] = choose_input_shape(cfg, args.input_shape)
        report['input_shape'] = list(cfg.model.get('dry_run_input_shape') or ())
        report['teachers_config'] = {
            n: str(t.get('config') if isinstance(t.get('config'), str) else
                   (t.get('model') or {}).get('type'))
            for n, t in _teacher_entries(cfg.model).items()}
        # The methods as the config gives them (--random-teachers replaces letKD templates).
        methods = {n: copy.deepcopy(b.get('method')) if isinstance(b, dict) else None
                   for n, b in (cfg.model.get('blocks') or {}).items()}
        if args.random_teachers:
            start = time.perf_counter()
            with torch.random.fork_rng(devices=[]):  # the caller's random state is kept
                report['replaced'] = use_random_teachers(cfg, tmpdir, cache)
            report['random_teachers_s'] = round(time.perf_counter() - start, 2)
        wall, cpu = time.perf_counter(), time.process_time()
        with report_printed_lines():
            distiller = build_distiller(cfg)
        report['build_s'] = round(time.perf_counter() - wall, 2)
        report['build_cpu_s'] = round(time.process_time() - cpu, 2)
        report['input_shape'] = list(distiller.dry_run_input_shape)
        report.update(describe_distiller(distiller, methods))
        report['ok'] = True
        del distiller
    except Exception as e:  # noqa: BLE001  (every problem is reported, by its message)
        if args.debug:
            raise
        report['error'] = error_text(e)
    finally:
        if report.get('student') and report['student']['parameters'] + sum(
                t['parameters'] for t in report['teachers'].values()) > 20_000_000:
            gc.collect()  # free a full-scale model's memory before the next config
    return report


# ---------------------------------------------------------------------- output
def _args_text(values: dict) -> str:
    return ', '.join(f'{k}={v!r}' for k, v in values.items()) or '-'


def _shapes_text(shapes) -> str:
    return ', '.join(str(tuple(s)) for s in shapes)


def format_report(r: dict) -> str:
    """The report of one config, after its ``Config:`` line (printed before the build, so
    that what the build prints falls under it)."""
    lines = []
    if 'input_shape' in r:
        lines.append(f'Dry-run batch: {tuple(r["input_shape"])} ({r["input_shape_source"]})')
    if not r['ok'] and 'student' not in r:
        for name, source in (r.get('teachers_config') or {}).items():
            lines.append(f'Teacher {name!r}: {source}')
        lines.append(f'FAILED: {r["error"]}')
        return '\n'.join(lines)
    s = r['student']
    lines.append(f'Student: {s["model"]} ({s["scope"]}), {s["parameters"]:,} parameters')
    replaced = r.get('replaced', {})
    for name, t in r['teachers'].items():
        lines.append(f'Teacher {name!r}: {t["model"]} ({t["scope"]}) from {t["source"]}, '
                     f'{t["parameters"]:,} parameters')
        was = replaced.get(f'teacher {name!r}')
        trained = ' (trainable: trained in the run from these)' \
            if t.get('kind') == 'trainable' else ''
        lines.append('    weights: ' + (f'random (--random-teachers; the config loads {was})'
                                        if was is not None else t['checkpoint']) + trained)
        lines.append(f'    input:   {t["view"]["text"]}')
        if t['view']['privileged']:
            lines.append(f'    privileged inputs (never given to the student): '
                         f'{t["view"]["privileged"]}')
    for name, b in r['blocks'].items():
        lines.append(f'Block {name!r}:')
        for side in ('student', 'teacher'):
            for i, (point, shapes) in enumerate(b[side]):
                label = side if i == 0 else ''
                lines.append(f'    {label:<8} {point:<28} {_shapes_text(shapes)}'.rstrip())
        lines.append(f'    method   {b["method"]}, {b["method_parameters"]:,} parameters')
        lines.append(f'             given: {_args_text(b["given"])}')
        lines.append(f'             defaults: {_args_text(b["defaults"])}')
        templates = replaced.get(f'block {name!r} templates')
        if templates is not None:
            lines.append(f'             templates: random (--random-teachers; the config '
                         f'reads {templates})')
        lines.append(f'    weight   {b["loss_weight"]}')
    teachers = sum(t['parameters'] for t in r['teachers'].values())
    lines.append(f'Parameters: student {s["parameters"]:,}, methods {r["method_parameters"]:,} '
                 f'(trained); teachers {teachers:,} (frozen)')
    random_s = (f'; random teachers made in {r["random_teachers_s"]} s'
                if 'random_teachers_s' in r else '')
    lines.append(f'Build (models, checkpoints, dry run): {r["build_s"]} s wall, '
                 f'{r["build_cpu_s"]} s CPU{random_s}')
    lines.append('OK' if r['ok'] else f'FAILED: {r["error"]}')
    return '\n'.join(lines)


def summary_table(reports: List[dict]) -> str:
    rows = ['| config | result | dry-run batch | student | teachers | methods | '
            'build (s, wall / CPU) |', '|---|---|---|---|---|---|---|']
    for r in reports:
        if r['ok']:
            teachers = ' + '.join(f'{t["parameters"] / 1e6:.2f} M'
                                  for t in r['teachers'].values())
            rows.append(f'| {r["config"]} | ok | {"x".join(map(str, r["input_shape"]))} | '
                        f'{r["student"]["parameters"] / 1e6:.2f} M | {teachers} | '
                        f'{r["method_parameters"] / 1e6:.3f} M | {r["build_s"]} / '
                        f'{r["build_cpu_s"]} |')
        else:
            rows.append(f'| {r["config"]} | **failed** | '
                        f'{"x".join(map(str, r.get("input_shape", []))) or "-"} | | | | |')
    passed = sum(r['ok'] for r in reports)
    rows.append(f'\n{passed} of {len(reports)} configs pass.')
    return '\n'.join(rows)


def expand_configs(paths: List[str], exclude: List[str]) -> List[str]:
    found = []
    for path in paths:
        found += find_distiller_configs(path, recursive=True) if osp.isdir(path) else [path]
    return [p for p in found if not any(fnmatch.fnmatch(p, g) or
                                        fnmatch.fnmatch(osp.relpath(p), g) for g in exclude)]


def main(argv=None, args=None) -> int:
    args = args if args is not None else parse_args(argv)
    with log_level(logging.INFO if args.verbose else logging.WARNING):
        return check_all(args)


@contextlib.contextmanager
def log_level(level: int):
    """MMEngine's current logger at ``level`` (the build's INFO lines only with --verbose;
    warnings always), put back afterwards (main() may run inside another program)."""
    logger = MMLogger.get_current_instance()
    old = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(old)


def check_all(args) -> int:
    try:
        configs = expand_configs(args.configs, args.exclude)
    except (FileNotFoundError, OSError) as e:
        if args.debug:
            raise
        print(f'FAILED: {error_text(e)}')
        return 1
    if not configs:
        print(f'FAILED: no runnable distiller config in {args.configs}.')
        return 1
    reports = []
    with tempfile.TemporaryDirectory(prefix='check_config_') as tmpdir:
        cache: Dict[str, str] = {}
        for i, path in enumerate(configs):
            print(('\n' if i else '') + f'Config: {path}', flush=True)
            report = check(path, args, tmpdir, cache)
            reports.append(report)
            print(format_report(report), flush=True)
    if len(configs) > 1:
        print('\n' + summary_table(reports))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(reports if len(reports) > 1 else reports[0], f, indent=2, default=repr)
    return 0 if all(r['ok'] for r in reports) else 1


if __name__ == '__main__':
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main(args=ARGS))
