"""The main job: distillation on the embedded demo data, on a CPU, in minutes.

    python tools/demo.py                                  # DiffKD, VkD, RTK on all three tasks
    python tools/demo.py --tasks classification detection segmentation   # dense from scratch
    python tools/demo.py --tasks classification --methods kd diffkd --seeds 0 1 2
    python tools/demo.py --jobs 1 --threads 2             # the same runs at another thread count
    python tools/demo.py --work-dir ~/mmkd-demo           # everything it writes goes there

For each task: make the data (digits ship inside scikit-learn; shapes are generated once into
the clone's data/shapes, where the configs read them), train the teacher unless
<work dir>/<task>/teacher.pth exists, trained from the same config and options (its ``meta``
keeps their fingerprint and the score, written with the weights in one atomic rename;
teacher.json is a copy to read), then train the student baseline and each method's distilled
student with the same seeds and schedule, all through tools/train.py. Prints one table
(teacher, baseline, distilled, gain, gap closed; mean +- std over seeds) and writes it to
<work dir>/results.md and results.json. The work dir is ``--work-dir`` (default
work_dirs/demo in the clone).

Runs go to ``--jobs`` parallel processes (default 2, one per core of the 2-core machines we
target), each pinned to ``--threads`` torch threads (default 1). CPU kernels add up in an order
that depends on the thread count, so pinning it makes the numbers independent of how many cores
the machine has and of ``--jobs`` (the runs are the same, only their order in time differs).
Each run is tools/train.py in a fork of one process that imported torch, MMEngine and mmkd
once (see :func:`start_run_server`), and prints its wall and CPU seconds.
``tools/benchmark/quality.py`` runs the full grid (every method, three seeds) with the same
machinery.

The dense tasks run in their pretrained-backbone variant (``detection-pt``,
``segmentation-pt``, the demo's default since issue 33): every backbone, students' and
teachers', starts from a pretraining on a shapes classification task
(configs/demo/shapes_pretrain), trained once into <work dir>/shapes_pretrain/<name>.pth and kept
like a teacher (fingerprinted, reused); a variant teacher's fingerprint includes the SHA-256 of
the backbone it started from. ``--tasks classification detection segmentation`` runs the
from-scratch dense tasks instead (tools/benchmark/quality.py's default, where every method has
a config).
"""
import argparse
import glob
import hashlib
import io
import json
import multiprocessing
import os
import os.path as osp
import re
import runpy
import statistics
import subprocess
import sys
import threading
import time
import warnings
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO)
# mmcv and mmseg import pkg_resources, which warns once per process on every import of them.
warnings.filterwarnings('ignore', message='pkg_resources is deprecated')
DEMO = osp.join('configs', 'demo')

TASKS = {
    'classification': dict(
        folder=f'{DEMO}/digits',
        data='digits (sklearn, distorted; 1,347 train / 450 test)', metric='accuracy/top1',
        metric_name='top-1 (%)', work='work_dirs/demo/digits', split='test',
        teacher=f'{DEMO}/digits/resnet34-wide_digits.py',
        # A second teacher of another architecture, for the ensemble of several teachers.
        extra_teachers=dict(teacher_wrn=f'{DEMO}/digits/wrn-16-2_digits.py',
                            # The involution teacher of the inductive-bias tokens (ibt_*).
                            teacher_inv=f'{DEMO}/digits/rednet-tiny_digits.py',
                            # The main teacher trained with label smoothing (kd-ls-teacher_*).
                            teacher_ls=f'{DEMO}/digits/resnet34-wide-ls_digits.py'),
        student=f'{DEMO}/digits/resnet18-tiny_digits.py'),
    'detection': dict(
        folder=f'{DEMO}/shapes_det',
        data='shapes (generated, 300 train / 100 val)', metric='coco/bbox_mAP',
        metric_name='bbox mAP (%)', scale=100.0, work='work_dirs/demo/shapes_det', split='val',
        teacher=f'{DEMO}/shapes_det/retinanet_r34-wide_fpn_shapes.py',
        # LD (ld_*) distils between GFL heads: a GFL teacher for its GFL student.
        extra_teachers=dict(teacher_gfl=f'{DEMO}/shapes_det/gfl_r34-wide_fpn_shapes.py'),
        student=f'{DEMO}/shapes_det/retinanet_r18-tiny_fpn_shapes.py'),
    'segmentation': dict(
        folder=f'{DEMO}/shapes_seg',
        data='shapes (generated, 300 train / 100 val)', metric='mIoU',
        metric_name='mIoU (%)', work='work_dirs/demo/shapes_seg', split='val',
        teacher=f'{DEMO}/shapes_seg/deeplabv3_r34-wide-d8_shapes.py',
        student=f'{DEMO}/shapes_seg/deeplabv3_r18-tiny-d8_shapes.py'),
    # No-reference IQA (RKIQT): the main teacher sees a non-aligned reference; the CNN and
    # involution teachers supervise the student's conv / inv tokens. Not in the main job
    # (its methods are mgd, ibt, rkiqt: `tools/benchmark/quality.py --tasks iqa`).
    'iqa': dict(
        folder=f'{DEMO}/iqa',
        data='synthetic IQA (scikit-image photos x 16 crops, distortion-level labels; '
             '5,760 train / 1,440 test)',
        metric='iqa/srcc', metric_name='SRCC (x100)', scale=100.0,
        work='work_dirs/demo/synthetic_iqa', split='test',
        teacher=f'{DEMO}/iqa/nar-resnet18-tiny_synthetic-iqa.py',
        extra_teachers=dict(teacher_cnn=f'{DEMO}/iqa/resnet18-tiny_synthetic-iqa.py',
                            teacher_inv=f'{DEMO}/iqa/rednet-tiny_synthetic-iqa.py'),
        student=f'{DEMO}/iqa/civt-tiny_synthetic-iqa.py'),
    # The pretrained-backbone variant of the shapes tasks (issue 33): the same data, students,
    # teachers, methods and schedules, but every backbone (students' and teachers') starts from
    # a pretraining on the shapes classification task (configs/demo/shapes_pretrain,
    # mmkd.ShapesClsDataset), as real dense distillation starts from ImageNet backbones.
    # `pretrained`: role ('student', 'teacher') -> (name, pretraining config); each pretraining
    # is trained once like a teacher (PRETRAIN) and its checkpoint passed to the role's runs.
    # Not in the default --tasks (`variant_of`): `--tasks detection-pt segmentation-pt`.
    'detection-pt': dict(
        folder=f'{DEMO}/shapes_det_pt', variant_of='detection',
        data='shapes (generated, 300 train / 100 val); backbones pretrained on shapes '
             'classification (1,500 crops)', metric='coco/bbox_mAP',
        metric_name='bbox mAP (%)', scale=100.0, work='work_dirs/demo/shapes_det_pt',
        split='val',
        teacher=f'{DEMO}/shapes_det_pt/retinanet_r34-wide_fpn_shapes_pt.py',
        student=f'{DEMO}/shapes_det_pt/retinanet_r18-tiny_fpn_shapes_pt.py',
        pretrained=dict(
            student=('r18-tiny_det', f'{DEMO}/shapes_pretrain/r18-tiny_shapes-cls_det.py'),
            teacher=('r34-wide_det', f'{DEMO}/shapes_pretrain/r34-wide_shapes-cls_det.py'))),
    'segmentation-pt': dict(
        folder=f'{DEMO}/shapes_seg_pt', variant_of='segmentation',
        data='shapes (generated, 300 train / 100 val); backbones pretrained on shapes '
             'classification (1,500 crops)', metric='mIoU',
        metric_name='mIoU (%)', work='work_dirs/demo/shapes_seg_pt', split='val',
        teacher=f'{DEMO}/shapes_seg_pt/deeplabv3_r34-wide-d8_shapes_pt.py',
        student=f'{DEMO}/shapes_seg_pt/deeplabv3_r18-tiny-d8_shapes_pt.py',
        pretrained=dict(
            student=('r18-tiny_seg', f'{DEMO}/shapes_pretrain/r18-tiny_shapes-cls_seg.py'),
            teacher=('r34-wide_seg', f'{DEMO}/shapes_pretrain/r34-wide_shapes-cls_seg.py'))),
}
#: The tasks tools/benchmark/quality.py runs when --tasks is not given: all but the variants
#: (``variant_of``): every method has a from-scratch config, only five have variant ones.
DEFAULT_TASKS = [task for task, spec in TASKS.items() if 'variant_of' not in spec]
#: The demo's tasks (tools/demo.py without --tasks): the dense tasks in their pretrained-backbone
#: variant, the better instrument (docs/benchmarks.md, issue 33: over 5 seeds the detection
#: student's spread is 0.9 mAP instead of 2.2, and every method's effect is larger than it).
DEMO_TASKS = ['classification', 'detection-pt', 'segmentation-pt']
#: The tasks that read the generated shapes data (data/shapes, made before their runs).
SHAPES_TASKS = ('detection', 'segmentation', 'detection-pt', 'segmentation-pt')
#: The backbone pretrainings of the variants' ``pretrained`` (a spec for :func:`ensure_teacher`):
#: trained once into ``<work>/<name>.pth`` (``<teacher work dir>/shapes_pretrain`` when one is
#: given), reused while their config and options are unchanged, like the teachers.
PRETRAIN = dict(metric='accuracy/top1', work='work_dirs/demo/shapes_pretrain', split='val')
#: The --cfg-options key that points a run at its pretrained backbone: a plain model (a
#: teacher or the student baseline), or a distiller's student.
PRETRAINED_KEY = dict(plain='model.backbone.init_cfg.checkpoint',
                      distiller='model.student.backbone.init_cfg.checkpoint')

#: The main job's methods: the mission's own. The full grid (quality.py) runs every method.
DEMO_METHODS = ('diffkd', 'vkd', 'rtk')
#: Where the demo's teachers, runs and results go without --work-dir (from the clone's root).
DEMO_WORK_DIR = 'work_dirs/demo'


def shown(path):
    """A path as printed: from the clone's root when inside it, else absolute."""
    path = osp.join(REPO, path)
    inside = osp.commonpath([REPO, osp.abspath(path)]) == REPO
    return osp.relpath(path, REPO) if inside else osp.abspath(path)


class RunFailed(RuntimeError):
    """A tools/train.py run exited non-zero or logged no metric."""


_live = set()  # Popen objects of the runs in progress (killed when another run fails)
_live_lock = threading.Lock()
_stopping = threading.Event()  # set when a run has failed: no new run starts


#: CPU seconds (user + system) of each finished run, by work dir, when known (forked runs).
cpu_seconds = {}
CPU_LINE = 'demo: CPU time of this run: '


def run_env(threads):
    """The environment of a run: warnings off, ``threads`` torch/OpenMP threads (None:
    torch's default)."""
    env = dict(os.environ, PYTHONWARNINGS='ignore')
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    return env


def train(config, work_dir, metric, options=(), scale=1.0, threads=None):
    """Run tools/train.py; return the last value of ``metric`` it logged, times ``scale``.
    ``threads`` pins the run's torch/OpenMP threads (None: torch's default). The run is a fork
    of the server :func:`run_grid` starts (:func:`start_run_server`), else a new interpreter;
    both run the same code on the same arguments and log the same numbers."""
    cmd = ['tools/train.py', config, '--work-dir', work_dir]
    if options:
        cmd += ['--cfg-options', *options]
    os.makedirs(osp.join(REPO, work_dir), exist_ok=True)
    log = osp.join(REPO, work_dir, 'demo_stdout.log')
    context = _server['context'] if _server['threads'] == threads else None
    with open(log, 'w') as f:
        with _live_lock:  # started and registered at once, or not at all once a run has failed
            if _stopping.is_set():
                raise RunFailed(f'Not started ({config}): another run failed.')
            if context:
                proc = context.Process(target=run_forked, args=(cmd, log))
                proc.start()
            else:
                proc = subprocess.Popen([sys.executable, *cmd], cwd=REPO, stdout=f,
                                        stderr=subprocess.STDOUT, env=run_env(threads))
            _live.add(proc)
        try:
            if context:
                proc.join()
                returncode = proc.exitcode
            else:
                returncode = proc.wait()
        finally:
            with _live_lock:
                _live.discard(proc)
    text = open(log).read()
    cmd = [sys.executable, *cmd]
    if returncode != 0:
        raise RunFailed(f'Training failed ({" ".join(cmd)}); see {log}:\n{text[-3000:]}')
    cpu = re.findall(rf'{CPU_LINE}([0-9.]+)', text)
    if cpu:
        cpu_seconds[work_dir] = float(cpu[-1])
    found = re.findall(rf'{re.escape(metric)}: (-?[0-9.]+)', text)
    if not found:
        raise RunFailed(f'No {metric} in the log of {config}; see {log}')
    return float(found[-1]) * scale


# ------------------------------------------------------------------ runs forked from a server
#: What every run imports first (seconds of CPU each time: torch, MMEngine's Runner, and mmkd
#: with mmpretrain, mmdet and mmsegmentation): imported once, by the server the runs fork from.
PRELOAD = ('torch', 'mmengine.runner', 'mmkd')
_server = dict(started=False, threads=None, context=None)
_server_lock = threading.Lock()


def start_run_server(threads):
    """Start the server that every run of this process forks from (multiprocessing's
    forkserver), with ``threads`` torch/OpenMP threads, importing :data:`PRELOAD` once, in the
    order tools/train.py imports them: a run then starts in milliseconds instead of importing
    them again (4-6 s of CPU per run on 2-core machines; the main demo's 15 runs spent 90 of
    their 710 CPU seconds there). Each run is a fresh fork of the same freshly imported state,
    so runs share nothing and log the same numbers as a new interpreter would (the demo's
    table is identical either way).

    Started only for one-thread runs (the default: a fork of a process whose OpenMP threads
    have started may hang, and at one thread there are none), where the runs' entry point can
    be found by name in the server (this file run as a script, or imported as ``demo`` by
    tools/benchmark/quality.py) and forkserver exists (not on Windows); otherwise, or for
    another thread count, runs start a new interpreter. Only one server per process: a later
    call does nothing."""
    with _server_lock:
        if _server['started']:
            return
        _server['started'] = True
        if threads != 1 or run_forked.__module__ not in ('__main__', 'demo') or \
                'forkserver' not in multiprocessing.get_all_start_methods():
            return
        context = multiprocessing.get_context('forkserver')
        # The main script is imported first: it puts the repository on sys.path.
        context.set_forkserver_preload(['__main__', *PRELOAD])
        saved = dict(os.environ)
        os.environ.update(run_env(threads))  # the server's, inherited by every run
        try:
            from multiprocessing import forkserver
            forkserver.ensure_running()  # starts it; its imports overlap this process's work
        finally:
            os.environ.clear()
            os.environ.update(saved)
        _server.update(context=context, threads=threads)


def run_forked(cmd, log):
    """A run in a fork of the server: ``python *cmd`` from the repository root, its output
    appended to ``log``; ends by logging its own CPU time (a fork starts from zero)."""
    import resource
    os.chdir(REPO)
    fd = os.open(log, os.O_WRONLY | os.O_APPEND)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.argv = list(cmd)
    try:
        runpy.run_path(cmd[0], run_name='__main__')
    finally:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        print(f'{CPU_LINE}{usage.ru_utime + usage.ru_stime:.1f} s', flush=True)


def ensure_teacher(task, spec, retrain, work_root=None, options=(), threads=None,
                   name='teacher', config=None, fingerprint_extra=()):
    """Train a teacher once; keep it in ``<work>/<name>.pth`` (by default the task's main
    teacher, ``teacher.pth``, the path the demo distillation configs name). Returns (score,
    checkpoint).

    The score and the fingerprint of the config and options it was trained from are in the
    checkpoint's ``meta``, written with the weights in one atomic rename: whenever a run is
    killed, the file holds a whole teacher and the meta of that very teacher, so a teacher is
    never reused for options it was not trained with. ``<name>.json`` is a copy of the meta for
    people to read, written atomically after it; it is never read back, and a kill that leaves
    it stale or missing only means it is written again on the next run.

    ``fingerprint_extra`` (strings) joins the fingerprint without being an option: what the
    run reads besides its config, e.g. the SHA-256 of the pretrained backbone it starts from
    (the option names only its path), so a teacher is trained again when that changes.
    """
    work_root = work_root or spec['work']
    config = config or spec['teacher']
    ckpt = osp.join(REPO, work_root, f'{name}.pth')
    info = osp.join(REPO, work_root, f'{name}.json')
    label = f'[{task}] {name.replace("_", " ")}'
    options = ['randomness.seed=0', *options]
    fingerprint = teacher_fingerprint(config, [*options, *fingerprint_extra])
    if osp.isfile(ckpt) and not retrain:
        meta, why_not = kept_teacher(ckpt, fingerprint)
        if meta is not None:
            write_teacher_info(info, meta)
            print(f'{label}: reusing {shown(ckpt)} ({spec["metric"]} '
                  f'{meta["score"]})')
            return meta['score'], ckpt
        print(f'{label}: {shown(ckpt)} {why_not}: training it again', flush=True)
    work = osp.join(work_root, name)
    print(f'{label}: training {config} ...', flush=True)
    start = time.time()
    score = train(config, work, spec['metric'], options, spec.get('scale', 1.0), threads)
    with open(osp.join(REPO, work, 'last_checkpoint')) as f:
        last = f.read().strip()
    import torch

    from mmkd.utils.atomic_io import atomic_write
    from mmkd.utils.checkpoint import safe_torch_load
    state = safe_torch_load(last)['state_dict']
    meta = dict(config=config, options=options, fingerprint=fingerprint,
                metric=spec['metric'], score=score)
    buf = io.BytesIO()
    torch.save(dict(state_dict=state, meta=meta), buf)
    atomic_write(buf.getvalue(), ckpt)  # weights and meta: one file, one rename
    write_teacher_info(info, meta)
    print(f'{label}: {score:.2f} ({took(start, work)})', flush=True)
    return score, ckpt


def pretrained_options(pretrain, key):
    """``([key=<checkpoint>], [fingerprint text])`` of a finished backbone pretraining
    (``pretrain``: the future of its :func:`ensure_teacher`): the --cfg-options that start a
    run's backbone from it, and the checkpoint's SHA-256 for the fingerprint of a teacher
    trained from it."""
    ckpt = pretrain.result()[1]
    return [f'{key}={ckpt}'], [f'pretrained backbone SHA-256 {file_sha256(ckpt)}']


def ensure_pretrained_teacher(pretrain, task, spec, retrain, work_root, options, threads,
                              name, config):
    """:func:`ensure_teacher` for a teacher whose backbone starts from the pretraining
    ``pretrain`` (a future, finished first): its checkpoint's path is an option, its content
    part of the fingerprint."""
    extra, fingerprint = pretrained_options(pretrain, PRETRAINED_KEY['plain'])
    return ensure_teacher(task, spec, retrain, work_root, [*options, *extra], threads, name,
                          config, fingerprint_extra=fingerprint)


def _run_pretrained(pretrain, label, config, work_dir, spec, options, threads):
    """:func:`_run` of a student baseline whose backbone starts from ``pretrain``."""
    extra, _ = pretrained_options(pretrain, PRETRAINED_KEY['plain'])
    return _run(label, config, work_dir, spec, [*options, *extra], threads)


def kept_teacher(ckpt, fingerprint):
    """``(meta, None)`` when ``ckpt`` is a whole teacher that :func:`ensure_teacher` trained
    from the config and options of ``fingerprint``; else ``(None, why not)``, a phrase for the
    "training it again" line. Any damage (truncated or empty file, not a checkpoint, no score)
    means training again, never a traceback."""
    from mmkd.utils.checkpoint import safe_torch_load
    try:
        kept = safe_torch_load(ckpt)
    except Exception as e:  # whatever makes it unreadable, the remedy is the same
        return None, f'cannot be read ({type(e).__name__}: {_first_line(e)})'
    if not isinstance(kept, dict) or not isinstance(kept.get('state_dict'), dict):
        return None, f'is not a checkpoint with a state_dict (a {type(kept).__name__})'
    meta = kept.get('meta')
    if (not isinstance(meta, dict) or not isinstance(meta.get('fingerprint'), str)
            or not isinstance(meta.get('score'), (int, float))):
        return None, ('records no score and fingerprint in its meta (written by an older '
                      'tools/demo.py, or not by tools/demo.py)')
    if meta['fingerprint'] != fingerprint:
        return None, 'was trained from another config or options'
    return meta, None


def write_teacher_info(info, meta):
    """Write ``<name>.json``, the readable copy of a teacher's meta, atomically (unless it
    already says exactly that: a kill may have left it stale, empty or missing)."""
    from mmkd.utils.atomic_io import atomic_write
    text = json.dumps(meta, indent=1) + '\n'
    try:
        with open(info) as f:
            if f.read() == text:
                return
    except (OSError, UnicodeDecodeError):
        pass
    atomic_write(text, info, 'w')


def _first_line(error):
    lines = str(error).strip().splitlines()
    return lines[0][:200] if lines else 'no message'


_config_lock = threading.Lock()
_loaded_configs = {}


def load_config(config):
    """The merged config of a file (a path from the repository root), loaded once per process:
    the grid reads each distillation config several times (its teachers, its baseline, its
    letKD templates)."""
    from mmengine.config import Config
    with _config_lock:  # Config.fromfile (pkg_resources) is not thread-safe
        if config not in _loaded_configs:
            _loaded_configs[config] = Config.fromfile(osp.join(REPO, config))
        return _loaded_configs[config]


def teacher_fingerprint(config, options):
    """SHA-256 of the teacher's resolved config (its bases merged) and the --cfg-options it is
    trained with: a kept teacher is reused only while both are unchanged."""
    from mmengine.config import Config
    with _config_lock:  # Config.fromfile (pkg_resources) is not thread-safe
        text = Config.fromfile(osp.join(REPO, config)).pretty_text
    return hashlib.sha256('\n'.join([text, *options]).encode()).hexdigest()


_templates_lock = threading.Lock()


def ensure_templates(config, teacher_ckpt, options=(), threads=None):
    """--cfg-options that point a config's letKD blocks at templates made from
    ``teacher_ckpt``. A config lists them in ``letkd_templates`` (block name -> arguments of
    tools/analysis/letkd_templates.py); each file is written beside the checkpoint, from the
    teacher's training images: ``options`` that set ``train_dataloader.*`` (the tune split's
    exclusion) are passed on.

    A file is reused only while it was made from the same teacher (its config and the SHA-256
    of its checkpoint), arguments and options: it records them (``made_by``), written with the
    templates in one atomic write, so a change of any of them, or a kill, never leaves
    templates that another setting made (64 kept when 32 are asked).
    """
    cfg = load_config(config)
    specs = cfg.get('letkd_templates')
    if not specs:
        return []
    teacher_sha256 = file_sha256(teacher_ckpt)
    train_options = [o for o in options if o.startswith('train_dataloader.')]
    out = []
    for name, args in specs.items():
        path = osp.join(osp.dirname(teacher_ckpt), f'letkd_{name}.pth')
        made_by = dict(teacher_config=cfg.model.teacher.config,
                       teacher_sha256=teacher_sha256,
                       arguments=[str(a) for a in args], cfg_options=train_options)
        with _templates_lock:
            why_not = stale_templates(path, made_by)
            if why_not:
                if osp.exists(path):
                    print(f'letKD templates {name}: {shown(path)} {why_not}: '
                          'making them again', flush=True)
                make_templates(path, made_by, teacher_ckpt, threads)
                print(f'letKD templates {name}: {shown(path)}', flush=True)
        out.append(f'model.blocks.{name}.method.templates={path}')
    return out


def file_sha256(path):
    """SHA-256 of a file's bytes, read in 1 MiB chunks (hashlib.file_digest is Python 3.11+)."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            digest.update(chunk)
    return digest.hexdigest()


#: What a templates file's ``made_by`` records, as named in the "making them again" line.
_MADE_BY = dict(arguments='arguments', cfg_options='--cfg-options',
                teacher_config='teacher config', teacher_sha256='teacher checkpoint')


def stale_templates(path, made_by):
    """None when the templates file ``path`` was made as ``made_by`` says; else why not (a
    phrase for the "making them again" line; unreadable or unrecorded means: make again)."""
    if not osp.isfile(path):
        return 'does not exist'
    from mmkd.utils.checkpoint import safe_torch_load
    try:
        kept = safe_torch_load(path)
    except Exception as e:  # whatever makes it unreadable, the remedy is the same
        return f'cannot be read ({type(e).__name__}: {_first_line(e)})'
    record = kept.get('made_by') if isinstance(kept, dict) else None
    if not isinstance(record, dict):
        return ('records no teacher and arguments (made by an older tools/demo.py, or by '
                'hand)')
    for key, what in _MADE_BY.items():
        old, new = record.get(key), made_by[key]
        if old != new:
            if key == 'teacher_sha256':  # the checkpoint's path is the same: say which content
                old, new = f'SHA-256 {str(old)[:12]}...', f'SHA-256 {new[:12]}...'
            return f'was made with {what} {old!r}, not {new!r}'
    return None


def make_templates(path, made_by, teacher_ckpt, threads):
    """Run tools/analysis/letkd_templates.py into a scratch file beside ``path``, then write its
    templates and ``made_by`` to ``path`` in one atomic write."""
    import torch

    from mmkd.utils.atomic_io import atomic_write
    from mmkd.utils.checkpoint import safe_torch_load
    scratch = osp.join(osp.dirname(path), f'.{osp.basename(path)}.making')
    cmd = [sys.executable, 'tools/analysis/letkd_templates.py', made_by['teacher_config'],
           teacher_ckpt, *made_by['arguments'], '--out', scratch]
    if made_by['cfg_options']:
        cmd += ['--cfg-options', *made_by['cfg_options']]
    env = dict(os.environ, PYTHONWARNINGS='ignore')
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    try:
        proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
        if proc.returncode != 0:
            raise RunFailed(f'Templates failed ({" ".join(cmd)}):\n{proc.stdout[-3000:]}')
        made = safe_torch_load(scratch)
        made['made_by'] = made_by
        buf = io.BytesIO()
        torch.save(made, buf)
        atomic_write(buf.getvalue(), path)
    finally:
        if osp.exists(scratch):
            os.remove(scratch)


def demo_teachers():
    """{config path: (task, name)} of every teacher the demo can train: each task's main
    teacher (name 'teacher') and its ``extra_teachers``."""
    found = {}
    for task, spec in TASKS.items():
        for name, config in [('teacher', spec['teacher']),
                             *spec.get('extra_teachers', {}).items()]:
            found[osp.realpath(osp.join(REPO, config))] = (task, name)
    return found


def config_teachers(config):
    """[(option prefix, (task, name))] for each teacher of a distillation config:
    ``model.teacher`` or ``model.teachers.<name>``, matched to the demo teacher trained from
    the same config file (a teacher of another task, e.g. the detection teacher of a
    segmentation student, is that task's). Teachers that are trained in the run (``trainable``)
    or are the student itself (``self``) need none: a config with only those reads none."""
    from mmkd.utils import pretrained_teacher_configs
    known = demo_teachers()
    out = []
    for key, teacher in pretrained_teacher_configs(load_config(config).model).items():
        path = osp.realpath(osp.join(REPO, teacher.get('config') or ''))
        if path not in known:
            raise ValueError(f'{config}: {key} ({teacher.get("config")}) is not a demo teacher; '
                             f'the demo trains {sorted(osp.relpath(p, REPO) for p in known)}.')
        out.append((key, known[path]))
    return out


def config_baseline(config, spec):
    """The student baseline a distillation config is compared with: its ``student_baseline``
    (a config path from the repository root, for a student that is not the task's, e.g. the ViTs
    of the inductive-bias tokens), else the task's ``student``."""
    baseline = load_config(config).get('student_baseline')
    if baseline is None:
        return spec['student']
    if not osp.isfile(osp.join(REPO, baseline)):
        raise ValueError(f'{config}: student_baseline {baseline!r} is not a file (a config '
                         'path from the repository root)')
    return baseline


def method_configs(spec, methods=None):
    """(method name, config path) for every runnable distiller config in the task's demo
    folder whose name is in ``methods`` (None: all): found by its merged ``model`` (a distiller
    with blocks), so the folder's shared ``_base_distill.py`` is not a column. The names are
    matched first: only the chosen methods' configs are loaded (loading a whole folder costs
    seconds of CPU before the first run can start)."""
    from mmkd.utils.tool_config import is_runnable_distiller_config
    paths = sorted(glob.glob(osp.join(REPO, spec['folder'], '*.py')))
    named = [(osp.basename(path).split('_')[0], path) for path in paths]
    return [(name, osp.relpath(path, REPO)) for name, path in named
            if (methods is None or name in methods) and is_runnable_distiller_config(path)]


def select_methods(tasks, methods):
    """{task: [(method, config)]} in the order of ``methods`` (None: every method). A name
    that no selected task has is an error listing the names there are."""
    found = {task: method_configs(TASKS[task], methods) for task in tasks}
    unknown = [m for m in methods or () if all(m != n for p in found.values() for n, _ in p)]
    if unknown:
        known = sorted({m for task in tasks for m, _ in method_configs(TASKS[task])})
        raise ValueError(f'Unknown method(s) {unknown} for tasks {list(tasks)}; valid: {known}')
    if methods is None:
        return found
    return {task: sorted([p for p in pairs if p[0] in methods],
                         key=lambda p: list(methods).index(p[0]))
            for task, pairs in found.items()}


def run_grid(tasks, methods, seeds, work_root, teacher_root=None, options=None, jobs=1,
             threads=1, retrain_teachers=False, split=None, variants=None):
    """Teachers, baselines and distilled students of ``tasks`` x ``methods`` x ``seeds``,
    ``jobs`` runs at a time. Returns one row per (task, method) with every seed's score.

    ``variants`` ({name: [key=value, ...]}) runs every method once per variant with those
    --cfg-options added to its distillation runs only (a weight sweep, a control with other
    record points); its rows are named ``method[name]``. Default: each method as configured.

    The teachers are queued first, so a distillation run that waits for its teacher only ever
    waits for one that is already training (no deadlock with any number of jobs). Before them
    come the backbone pretrainings of the tasks with ``pretrained`` (the variants), trained
    with ``options['pretrain']`` (not a task's: their data is their own), which those tasks'
    teachers, baselines and distilled students start from.
    """
    options = options or {}
    variants = variants or {'': []}
    _stopping.clear()
    start_run_server(threads)
    chosen = {task: [(f'{m}[{name}]' if name else m, config, extra)
                     for m, config in pairs for name, extra in variants.items()]
              for task, pairs in select_methods(tasks, methods).items()}
    pool = ThreadPoolExecutor(max_workers=jobs)
    futures = []

    def submit(fn, *args):
        futures.append(pool.submit(fn, *args))
        return futures[-1]

    # The teachers every chosen run needs: each task's own (the reference of the gap), and
    # those of the distillation configs, which may belong to another task.
    needed = {(task, 'teacher'): None for task in tasks if chosen[task]}
    uses, baselines = {}, {}
    for task in tasks:
        for method, config, _ in chosen[task]:
            uses[config] = config_teachers(config)
            baselines[config] = config_baseline(config, TASKS[task])
            needed.update({tn: None for _, tn in uses[config]})
    teachers, students, distilled = {}, {}, {}
    # The backbone pretrainings of the variants' students and teachers (first: they wait for
    # nothing, and everything of those tasks waits for them).
    pretrains, pretrained = {}, {}
    for task in dict.fromkeys([*[t for t in tasks if chosen[t]], *(t for t, _ in needed)]):
        for role, (name, config) in TASKS[task].get('pretrained', {}).items():
            if name not in pretrains:
                proot = (osp.join(teacher_root, osp.basename(PRETRAIN['work'])) if teacher_root
                         else None)
                pretrains[name] = submit(ensure_teacher, 'pretrain', PRETRAIN,
                                         retrain_teachers, proot, options.get('pretrain', ()),
                                         threads, name, config)
            pretrained[task, role] = pretrains[name]
    for task, name in needed:
        spec = TASKS[task]
        troot = osp.join(teacher_root, osp.basename(spec['work'])) if teacher_root else None
        config = spec['teacher'] if name == 'teacher' else spec['extra_teachers'][name]
        if name == 'teacher' and (task, 'teacher') in pretrained:
            teachers[task, name] = submit(ensure_pretrained_teacher, pretrained[task, 'teacher'],
                                          task, spec, retrain_teachers, troot,
                                          options.get(task, ()), threads, name, config)
            continue
        teachers[task, name] = submit(ensure_teacher, task, spec, retrain_teachers, troot,
                                      options.get(task, ()), threads, name, config)
    active = [task for task in tasks if chosen[task]]
    for task in active:
        spec, root = TASKS[task], osp.join(work_root, osp.basename(TASKS[task]['work']))
        # The task's student, and every other baseline its configs name, once per seed.
        for baseline in dict.fromkeys(baselines[c] for _, c, _ in chosen[task]):
            name = ('student' if baseline == spec['student'] else
                    osp.splitext(osp.basename(baseline))[0])
            for seed in seeds:
                args = (f'[{task}] {name} seed {seed}', baseline, f'{root}/{name}_seed{seed}',
                        spec, [f'randomness.seed={seed}', *options.get(task, ())], threads)
                if baseline == spec['student'] and (task, 'student') in pretrained:
                    students[task, baseline, seed] = submit(
                        _run_pretrained, pretrained[task, 'student'], *args)
                    continue
                students[task, baseline, seed] = submit(_run, *args)

    def distill(task, method, config, extra, seed):
        spec, root = TASKS[task], osp.join(work_root, osp.basename(TASKS[task]['work']))
        ckpts = [f'{key}.checkpoint={teachers[tn].result()[1]}' for key, tn in uses[config]]
        if uses[config]:
            ckpts += ensure_templates(config, teachers[uses[config][0][1]].result()[1],
                                      options.get(task, ()), threads)
        if (task, 'student') in pretrained and baselines[config] == spec['student']:
            ckpts += pretrained_options(pretrained[task, 'student'],
                                        PRETRAINED_KEY['distiller'])[0]
        return _run(f'[{task}] {method} seed {seed}', config, f'{root}/{method}_seed{seed}',
                    spec, [f'randomness.seed={seed}', *ckpts, *options.get(task, ()), *extra],
                    threads)

    for seed in seeds:
        for task in active:
            for method, config, extra in chosen[task]:
                distilled[task, method, seed] = submit(distill, task, method, config, extra,
                                                       seed)
    try:
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        for future in done:
            future.result()  # the first failure, if any, raises here
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        with _live_lock:
            _stopping.set()
            for proc in _live:
                proc.kill()
        raise
    pool.shutdown()

    rows = []
    for task in active:
        spec = TASKS[task]
        for method, config, extra in chosen[task]:
            rows.append(dict(
                task=task, data=spec['data'], metric=spec['metric_name'], method=method,
                config=config, options=list(extra),
                teacher=teachers[reference_teacher(task, uses[config])].result()[0],
                teachers={f'{t}/{n}': teachers[t, n].result()[0] for _, (t, n) in uses[config]},
                baseline=baselines[config],
                student=[students[task, baselines[config], s].result() for s in seeds],
                distilled=[distilled[task, method, s].result() for s in seeds],
                seeds=list(seeds), split=split or spec['split']))
            if spec.get('pretrained'):  # the pretrainings' val top-1 (%), by role
                rows[-1]['pretrained'] = {role: pretrained[task, role].result()[0]
                                          for role in spec['pretrained']}
    return rows


def reference_teacher(task, used):
    """The teacher a row's gap is measured to: the task's main teacher, unless the config
    reads exactly one other teacher of the same task (LD's GFL teacher for its GFL student,
    the label-smoothed digits teacher). A teacher of another task is never the reference: its
    metric is not the student's."""
    keys = [key for _, key in used]
    if len(keys) == 1 and keys[0][0] == task:
        return keys[0]
    return task, 'teacher'


def _run(label, config, work_dir, spec, options, threads):
    start = time.time()
    score = train(config, work_dir, spec['metric'], options, spec.get('scale', 1.0), threads)
    print(f'{label}: {score:.2f} ({took(start, work_dir)})', flush=True)
    return score


def took(start, work_dir):
    """How long a finished run took: wall seconds and, where known, its CPU seconds (on a
    shared machine the wall time also counts the waits for a core; the CPU time does not)."""
    cpu = cpu_seconds.get(work_dir)
    return f'{time.time() - start:.0f} s' + ('' if cpu is None else f', {cpu:.0f} s CPU')


def mean_std(values):
    mean = statistics.mean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarise(rows):
    """Markdown table: one row per (task, method); gap closed = (distilled - student) /
    (teacher - student) on the means; the result column says plainly where there is no gain.
    A method compared with a baseline other than the task's student says which: ``(vs ...)``."""
    lines = ['| task | split | metric | method | teacher | student | distilled | gain | '
             'gap closed | seeds | result |', '|---|---|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        s_mean, s_std = mean_std(r['student'])
        d_mean, d_std = mean_std(r['distilled'])
        gap = r['teacher'] - s_mean
        closed = f'{(d_mean - s_mean) / gap:+.2f}' if abs(gap) > 1e-9 else 'n/a'
        wins = sum(d > s for d, s in zip(r['distilled'], r['student']))
        n = len(r['seeds'])
        result = 'gain' if d_mean > s_mean else '**no gain**'
        method = r['method']
        if r.get('baseline') and r['baseline'] != TASKS.get(r['task'], {}).get('student'):
            method += f' (vs {osp.splitext(osp.basename(r["baseline"]))[0]})'
        if n > 1:
            result += f' (better on {wins}/{n} seeds)'
        lines.append(f'| {r["task"]} | {r["split"]} | {r["metric"]} | {method} | '
                     f'{r["teacher"]:.2f} | {s_mean:.2f} ± {s_std:.2f} | '
                     f'{d_mean:.2f} ± {d_std:.2f} | {d_mean - s_mean:+.2f} | {closed} | '
                     f'{n} | {result} |')
    return '\n'.join(lines)


def add_run_arguments(parser, seeds, tasks=DEFAULT_TASKS, tasks_help=None):
    parser.add_argument('--tasks', nargs='+', choices=list(TASKS), default=list(tasks),
                        help=tasks_help or 'default: all but the pretrained-backbone variants '
                        f'({" ".join(t for t in TASKS if t not in DEFAULT_TASKS)})')
    parser.add_argument('--seeds', nargs='+', type=int, default=seeds)
    parser.add_argument('--jobs', type=int, default=min(2, os.cpu_count() or 1),
                        help='runs in parallel (default: 2, or 1 on a 1-core machine)')
    parser.add_argument('--threads', type=int, default=1,
                        help='torch threads per run (default 1; the numbers depend on it)')


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    add_run_arguments(parser, seeds=[0], tasks=DEMO_TASKS, tasks_help=(
        f'default: {" ".join(DEMO_TASKS)} (the dense tasks with pretrained backbones; '
        '"detection segmentation" for the from-scratch ones)'))
    parser.add_argument('--methods', nargs='+', default=list(DEMO_METHODS),
                        help=f'method names (config prefixes; default: {" ".join(DEMO_METHODS)})')
    parser.add_argument('--retrain-teachers', action='store_true')
    parser.add_argument('--work-dir', default=None,
                        help='where everything the demo trains and writes goes: teachers '
                        '(<dir>/<task>/teacher.pth), runs, letKD templates, results.md and '
                        'results.json (default: work_dirs/demo in the clone; a relative path is '
                        'from the current directory). The generated shapes data stays in the '
                        "clone's data/shapes, where the configs read it")
    args = parser.parse_args()
    work_root = osp.abspath(args.work_dir) if args.work_dir else DEMO_WORK_DIR
    start = time.time()
    start_run_server(args.threads)  # first: its imports overlap ours and the data generation

    if set(SHAPES_TASKS) & set(args.tasks):
        from mmkd.datasets import make_shapes_dataset
        info = make_shapes_dataset(osp.join(REPO, 'data', 'shapes'))
        print(('generated' if info['generated'] else 'reusing') + ' data/shapes')
    print(f'{args.jobs} run(s) at a time, {args.threads} thread(s) each', flush=True)
    try:
        rows = run_grid(args.tasks, args.methods, args.seeds, work_root, work_root,
                        jobs=args.jobs, threads=args.threads,
                        retrain_teachers=args.retrain_teachers)
    except (RunFailed, ValueError) as e:
        sys.exit(str(e))

    table = summarise(rows)
    out = osp.join(REPO, work_root)
    os.makedirs(out, exist_ok=True)
    open(osp.join(out, 'results.md'), 'w').write(table + '\n')
    json.dump(dict(rows=rows, jobs=args.jobs, threads=args.threads),
              open(osp.join(out, 'results.json'), 'w'), indent=1)
    print('\n' + table)
    cpu = f', {sum(cpu_seconds.values()):.0f} s CPU in the runs' if cpu_seconds else ''
    print(f'\n(total {time.time() - start:.0f} s{cpu}; logs and checkpoints under '
          f'{shown(out)}/)')


if __name__ == '__main__':
    main()
