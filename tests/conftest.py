import contextlib
import copy
import os
import os.path as osp
import subprocess
import sys
import warnings

# Two pytest workers on two cores, each starting tools that would take every core for torch's
# intra-op threads: oversubscribed, the suite ran ~12 % slower (measured on 4 of its heaviest
# tests, 145 s -> 127 s). One thread per process unless the caller chose otherwise; the tools
# the tests start inherit it.
os.environ.setdefault('OMP_NUM_THREADS', '1')
os.environ.setdefault('MKL_NUM_THREADS', '1')

import pytest  # noqa: E402
import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.registry import MODELS as MMENGINE_MODELS  # noqa: E402
from mmengine.registry import DefaultScope  # noqa: E402

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO = osp.join(REPO, 'configs', 'demo')
warnings.filterwarnings('ignore', category=UserWarning)
torch.set_num_threads(int(os.environ['OMP_NUM_THREADS']))  # in case torch was imported first

DIGITS = dict(
    student=osp.join(DEMO, 'digits', 'resnet18-tiny_digits.py'),
    teacher=osp.join(DEMO, 'digits', 'resnet34-wide_digits.py'),
    teacher_wrn=osp.join(DEMO, 'digits', 'wrn-16-2_digits.py'),  # the ensemble's second
    teacher_inv=osp.join(DEMO, 'digits', 'rednet-tiny_digits.py'),  # inductive-bias tokens
    teacher_ls=osp.join(DEMO, 'digits', 'resnet34-wide-ls_digits.py'),  # label smoothing
    distill=osp.join(DEMO, 'digits', 'kd_resnet34-wide_resnet18-tiny_digits.py'))
DET = dict(
    student=osp.join(DEMO, 'shapes_det', 'retinanet_r18-tiny_fpn_shapes.py'),
    teacher=osp.join(DEMO, 'shapes_det', 'retinanet_r34-wide_fpn_shapes.py'),
    teacher_gfl=osp.join(DEMO, 'shapes_det', 'gfl_r34-wide_fpn_shapes.py'),  # LD
    distill=osp.join(DEMO, 'shapes_det', 'fitnet_retinanet_r34-wide_r18-tiny_fpn_shapes.py'))
SEG = dict(
    student=osp.join(DEMO, 'shapes_seg', 'deeplabv3_r18-tiny-d8_shapes.py'),
    teacher=osp.join(DEMO, 'shapes_seg', 'deeplabv3_r34-wide-d8_shapes.py'),
    distill=osp.join(DEMO, 'shapes_seg', 'kd_deeplabv3_r34-wide_r18-tiny-d8_shapes.py'))


def digits_cfg(teacher_ckpt, **overrides):
    """The digits logit-KD distiller's model config, with ``overrides`` replacing its keys."""
    cfg = Config.fromfile(DIGITS['distill'])
    model = copy.deepcopy(cfg.model)
    model.teacher.checkpoint = teacher_ckpt
    model.student.data_preprocessor = dict(type='ClsDataPreprocessor', **cfg.data_preprocessor)
    for key, value in overrides.items():  # replace, not merge (update() would merge blocks)
        model[key] = value
    return model


def build(model_cfg, scope='mmpretrain'):
    """Build a model config as the Runner does under ``default_scope``."""
    with DefaultScope.overwrite_default_scope(scope):
        return MMENGINE_MODELS.build(model_cfg)


def batch(n=4, size=32, num_classes=10):
    """A random classification batch: (inputs, data samples)."""
    from mmpretrain.structures import DataSample
    inputs = torch.randn(n, 3, size, size)
    samples = [DataSample().set_gt_label(i % num_classes) for i in range(n)]
    return inputs, samples


def random_teacher_checkpoint(config_path: str, out_path: str, seed: int = 0) -> str:
    """Build the teacher from its config with random weights and save them (no network)."""
    from mmkd.distillers import build_model_in_scope, load_model_config, without_pretrained
    torch.manual_seed(seed)
    model_cfg, scope = load_model_config(config_path)  # local file or 'mmdet::...'
    model = build_model_in_scope(without_pretrained(model_cfg), scope)
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), out_path)
    return out_path


@pytest.fixture(scope='session')
def teacher_ckpts(tmp_path_factory):
    root = tmp_path_factory.mktemp('teachers')
    ckpts = {name: random_teacher_checkpoint(cfgs['teacher'], str(root / f'{name}.pth'))
             for name, cfgs in dict(digits=DIGITS, det=DET, seg=SEG).items()}
    for name in ('wrn', 'inv'):
        ckpts[f'digits_{name}'] = random_teacher_checkpoint(DIGITS[f'teacher_{name}'],
                                                            str(root / f'digits_{name}.pth'))
    ckpts['det_gfl'] = random_teacher_checkpoint(DET['teacher_gfl'], str(root / 'det_gfl.pth'))
    # The digits letKD configs' templates (made from the trained teacher by the demo; here
    # random, of the widths the configs imply: 64 centres of the teacher's 128 channels; 10
    # classes x 8 sub-classes in 9 LDA dimensions). Built from a real teacher in
    # tests/test_letkd.py.
    ckpts['letkd_penult'] = str(root / 'letkd_penult.pth')
    torch.save(dict(kind='kmeans', centres=torch.randn(64, 128)), ckpts['letkd_penult'])
    ckpts['letkd_inter'] = str(root / 'letkd_inter.pth')
    torch.save(dict(kind='subclass', lda_mean=torch.zeros(128), lda_scalings=torch.randn(128, 9),
                    centres=torch.randn(80, 9), score_matrix=torch.full((80, 80), 1 / 80),
                    num_subclasses=8), ckpts['letkd_inter'])
    return ckpts


def teacher_checkpoint_options(config_path: str, ckpts: dict) -> list:
    """``--cfg-options`` giving each teacher of a demo distillation config (one, or several
    named) the random checkpoint of ``teacher_ckpts`` for its architecture."""
    by_config = {osp.realpath(DIGITS['teacher']): 'digits', osp.realpath(DET['teacher']): 'det',
                 osp.realpath(SEG['teacher']): 'seg',
                 osp.realpath(DIGITS['teacher_wrn']): 'digits_wrn',
                 osp.realpath(DIGITS['teacher_inv']): 'digits_inv',
                 osp.realpath(DET['teacher_gfl']): 'det_gfl',
                 # the same network as the main teacher, trained with label smoothing
                 osp.realpath(DIGITS['teacher_ls']): 'digits'}
    from mmkd.utils import pretrained_teacher_configs
    model = Config.fromfile(config_path).model
    opts = [f'{key}.checkpoint={ckpts[by_config[osp.realpath(t.config)]]}'
            for key, t in pretrained_teacher_configs(model).items()]
    # letKD blocks read templates made from the teacher (never the demo's work_dirs files)
    opts += [f'model.blocks.{name}.method.templates={ckpts[f"letkd_{name}"]}'
             for name, block in model.blocks.items()
             if (block.method if isinstance(block.method, str) else block.method.get('type'))
             in ('LetKD', 'LetKDSubclass')]
    return opts


@pytest.fixture(scope='session')
def shapes_root(tmp_path_factory):
    from mmkd.datasets import make_shapes_dataset
    root = tmp_path_factory.mktemp('data') / 'shapes'
    make_shapes_dataset(str(root), num_train=24, num_val=8, num_tune=4, img_size=64, seed=0)
    return str(root) + '/'


def shapes_options(root: str, det: bool) -> list:
    opts = [f'train_dataloader.dataset.data_root={root}',
            f'val_dataloader.dataset.data_root={root}',
            f'test_dataloader.dataset.data_root={root}']
    if det:
        ann = root + 'annotations/instances_val.json'
        opts += [f'val_evaluator.ann_file={ann}', f'test_evaluator.ann_file={ann}']
    return opts


def assert_blocks_logged(config_path: str, out: str) -> None:
    """Every block of a distillation config logged a loss (DiffKD also its gamma in (0, 1)),
    and the student its task losses (a data-free student has none: its generator logs its
    own instead)."""
    import re
    model = Config.fromfile(config_path).model
    blocks = model.blocks
    for name, block in blocks.items():
        logged = re.findall(rf'distill\.{name}\.(\w+): ([-0-9.e]+)', out)
        assert any(k.startswith('loss') for k, _ in logged), (name, out[-3000:])
        if block.method.type == 'DiffKD':  # the method's diagnostic is logged
            gammas = [float(v) for k, v in logged if k == 'gamma']
            assert gammas and all(0 < g < 1 for g in gammas)
    if 'DataFreeDistiller' in str(model.type):
        assert re.search(r'generator\.[\w.]*loss\w*: [-0-9.e]+', out)
    else:
        assert re.search(r'student\.[\w.]*loss\w*: [0-9.]+', out)  # and the task losses


@contextlib.contextmanager
def _mmengine_globals_kept():
    """MMEngine keeps the default registry scope and the message hub as global "current"
    instances: a test (or a module's fixture) that builds a Runner, or calls
    ``init_default_scope``, leaves its scope and its hub (with an iteration count that
    scheduled loss weights read) current for every later test of the same worker. The
    instances current before are put back afterwards, so no test depends on which tests (or
    test modules) ran before it in its worker."""
    from collections import OrderedDict

    from mmengine.logging import MessageHub
    from mmengine.registry import DefaultScope
    saved = {cls: OrderedDict(cls._instance_dict) for cls in (DefaultScope, MessageHub)}
    try:
        yield
    finally:
        for cls, instances in saved.items():
            cls._instance_dict.clear()
            cls._instance_dict.update(instances)


@pytest.fixture(autouse=True, scope='module')
def _mmengine_globals_per_module():
    with _mmengine_globals_kept():  # around the module's own fixtures too
        yield


@pytest.fixture(autouse=True)
def _mmengine_globals_per_test():
    with _mmengine_globals_kept():
        yield


def load_tool_module(relpath: str):
    """A repo tool (``'tools/analysis/cka.py'``) imported as a module, to call its functions."""
    import importlib.util
    name = osp.splitext(osp.basename(relpath))[0] + '_tool'
    spec = importlib.util.spec_from_file_location(name, osp.join(REPO, relpath))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def forked_ranks(worker, tmp_path, *args, world_size=2, timeout=120) -> list:
    """Run ``worker(rank, port, out_path, *args)`` in ``world_size`` processes forked from this
    one (mmkd already imported: a fresh interpreter needs seconds to import it), on a free
    port for a gloo group over TCP; each rank saves its result to ``out_path``. Returns the
    ranks' results, in rank order; a rank that fails or outlives ``timeout`` fails the test."""
    import multiprocessing
    from test_distributed import free_port
    ctx = multiprocessing.get_context('fork')
    port = free_port()
    paths = [str(tmp_path / f'{r}.pth') for r in range(world_size)]
    procs = [ctx.Process(target=worker, args=(r, port, paths[r], *args))
             for r in range(world_size)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=timeout)
        if p.is_alive():
            p.kill()
        assert p.exitcode == 0, f'a rank failed (exit code {p.exitcode})'
    return [torch.load(path) for path in paths]


def run_tool(args, cwd=REPO, timeout=600, check=True, env=None):
    """Run a repo tool with this interpreter; return the completed process (output joined)."""
    full_env = dict(os.environ, PYTHONWARNINGS='ignore', **(env or {}))
    proc = subprocess.run([sys.executable, *args] if args[0].endswith('.py') else args,
                          cwd=cwd, env=full_env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f'{" ".join(args)} exited {proc.returncode}:\n'
                             f'{proc.stdout[-6000:]}')
    return proc


def pytest_addoption(parser):
    parser.addoption('--run-slow', action='store_true',
                     help='also run tests marked slow (each covered by a faster default test)')


def pytest_configure(config):
    config.addinivalue_line('markers', 'slow: long; a faster default test covers the same path '
                            '(run with --run-slow)')


def pytest_collection_modifyitems(config, items):
    if config.getoption('--run-slow'):
        return
    skip = pytest.mark.skip(reason='slow: run with --run-slow')
    for item in items:
        if 'slow' in item.keywords:
            item.add_marker(skip)
