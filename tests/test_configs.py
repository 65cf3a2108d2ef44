"""Every distillation config parses, names a real teacher config, and builds its distiller.

Full-scale teachers' checkpoints are URLs (no network in tests): the check swaps in a
checkpoint of the same architecture with random weights, so the strict load still runs.
"""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS as ROOT
from mmengine.registry import DefaultScope

import mmkd  # noqa: F401
from mmkd.distillers import Distiller, load_model_config
from mmkd.utils.tool_config import (find_distiller_configs, is_runnable_distiller_config,
                                    pretrained_teacher_configs)

from conftest import DEMO, DET, DIGITS, REPO, SEG, random_teacher_checkpoint

# Found by their merged `model` (a distiller with blocks), not by their text: demo method
# configs inherit the distiller from a shared `_base_distill.py`, which is not runnable.
FULL_SCALE = [p for folder in sorted(glob.glob(osp.join(REPO, 'configs', '*', '')))
              if osp.basename(osp.dirname(folder)) != 'demo'
              for p in find_distiller_configs(folder)]
DEMO_DISTILL = find_distiller_configs(osp.join(REPO, 'configs', 'demo'), recursive=True)


def test_there_are_configs_for_every_task():
    scopes = {Config.fromfile(p).default_scope for p in FULL_SCALE}
    assert {'mmpretrain', 'mmdet', 'mmseg'} <= scopes
    assert len(DEMO_DISTILL) >= 3


@pytest.mark.parametrize('path', FULL_SCALE + DEMO_DISTILL,
                         ids=lambda p: osp.relpath(p, osp.join(REPO, 'configs')))
def test_distillation_config_declares_mmkd(path):
    cfg = Config.fromfile(path)
    assert cfg.custom_imports.imports == ['mmkd']
    assert cfg.model.type in ('mmkd.Distiller', 'mmkd.DataFreeDistiller')


# The demo configs are built (dry run included) by tests/test_check_config.py's
# test_every_demo_config_passes, at their own dry-run shapes: not twice.
@pytest.mark.parametrize('path', FULL_SCALE,
                         ids=lambda p: osp.relpath(p, osp.join(REPO, 'configs')))
def test_distillation_config_builds(path, tmp_path):
    cfg = Config.fromfile(path)
    model = cfg.model
    # (none for self-distillation; a trainable teacher trains from its own start)
    teachers = list(pretrained_teacher_configs(model).values())
    for i, teacher in enumerate(teachers):
        ckpt = teacher.checkpoint
        # A published checkpoint (metafile / authors'), or - for CIFAR teachers, which have
        # none - the work dir of the repo's own teacher config.
        assert ckpt.startswith('https://') or (
            ckpt.startswith('work_dirs/') and teacher.config.startswith(REPO)), ckpt
        load_model_config(teacher.config)  # the teacher config exists
        teacher.checkpoint = random_teacher_checkpoint(teacher.config,
                                                       str(tmp_path / f'teacher{i}.pth'))
        # The random checkpoint is in the model's own key layout (revise_keys: own test).
        teacher.pop('revise_keys', None)
    if teachers:
        fake_letkd_templates(model, teachers[0], tmp_path)
    # enough to size methods, quick on a CPU; mmcv's CPU deformable convolution (FGD's DCN
    # teachers) fails on the smallest FPN levels of a 64 x 64 image
    model.dry_run_input_shape = (1, 3, 128, 128) if 'dconv' in path else (1, 3, 64, 64)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        if cfg.get('data_preprocessor'):
            model.data_preprocessor = cfg.data_preprocessor
        distiller = ROOT.build(model)
    assert isinstance(distiller, Distiller)
    assert all(m.built for m in distiller.methods.values())
    # Full-scale random teachers are up to 370 MB each, over 100 configs: pytest keeps the
    # last three runs' tmp dirs, so leave none behind (about 8 GB per run otherwise).
    for path in tmp_path.glob('*.pth'):
        path.unlink()


def fake_letkd_templates(model, teacher, tmp_path):
    """letKD blocks name templates files made from a trained teacher: write random ones of
    the widths the config implies (K from the student's KDLayer, C from the teacher's point,
    8 sub-classes per class), so that the build still checks both."""
    for name, block in model.blocks.items():
        kind = block.method.get('type')
        if kind not in ('LetKD', 'LetKDSubclass'):
            continue
        insert = block.student.split('.')[1]  # 'kd_inserts.<insert>.scores'
        k = model.student_inserts[insert].module.num_templates
        t_cfg, scope = load_model_config(teacher.config)
        with DefaultScope.overwrite_default_scope(scope or 'mmpretrain'):
            net = ROOT.build(t_cfg).eval()
        found = {}
        net.get_submodule(block.teacher).register_forward_hook(
            lambda m, i, o: found.update(c=o.shape[1]))  # returns None: output unchanged
        with torch.no_grad():
            net.extract_feat(torch.zeros(1, 3, 64, 64))
        c = found['c']
        path = str(tmp_path / f'{name}_templates.pth')
        if kind == 'LetKD':
            torch.save(dict(kind='kmeans', centres=torch.randn(k, c)), path)
        else:
            n = min(60, c)
            torch.save(dict(kind='subclass', lda_mean=torch.zeros(c),
                            lda_scalings=torch.randn(c, n), centres=torch.randn(k, n),
                            score_matrix=torch.full((k, k), 1.0 / k), num_subclasses=8),
                       path)
        block.method.templates = path


def test_dry_run_input_shape_is_inferred_from_the_config():
    """tools/train.py and tools/test.py give a distiller without dry_run_input_shape one from
    the data settings: the real batch size the methods will see."""
    from mmkd.utils import infer_dry_run_input_shape
    expected = {
        'diffkd/retinanet_r101_r50.py': ((2, 3, 800, 1333), 'Resize'),
        'diffkd/deeplabv3_r101_r18_cityscapes.py': ((2, 3, 512, 1024), 'data_preprocessor'),
        'diffkd/resnet34_resnet18_in1k.py': ((2, 3, 224, 224), 'CenterCrop'),
        'demo/shapes_det/retinanet_r18-tiny_fpn_shapes.py': ((2, 3, 64, 64), 'Resize'),
    }
    for rel, (shape, source) in expected.items():
        found = infer_dry_run_input_shape(Config.fromfile(osp.join(REPO, 'configs', rel)))
        assert found is not None and found[0] == shape and source in found[1], (rel, found)
    for path in FULL_SCALE:
        found = infer_dry_run_input_shape(Config.fromfile(path))
        assert found is not None and found[0][:2] == (2, 3) and min(found[0][2:]) >= 32, path


def test_demo_discovery_finds_every_method_config_and_no_shared_base():
    """Each demo folder: every config but the teacher, the student and the shared base is a
    runnable distiller, and the base (a distiller without blocks) is not one."""
    expected = set()
    iqa = osp.join(DEMO, 'iqa')
    IQA = dict(student=osp.join(iqa, 'civt-tiny_synthetic-iqa.py'),
               teacher=osp.join(iqa, 'nar-resnet18-tiny_synthetic-iqa.py'),
               teacher_cnn=osp.join(iqa, 'resnet18-tiny_synthetic-iqa.py'),
               teacher_inv=osp.join(iqa, 'rednet-tiny_synthetic-iqa.py'))
    for task in (DIGITS, DET, SEG, IQA):
        folder = osp.dirname(task['student'])
        base = osp.join(folder, '_base_distill.py')
        assert Config.fromfile(base).model.type == 'mmkd.Distiller'
        assert not is_runnable_distiller_config(base)
        plain = {task['student'], task['teacher'], task.get('teacher_wrn'),
                 task.get('teacher_inv'), task.get('teacher_cnn'), task.get('teacher_ls'),
                 task.get('teacher_gfl'), base}
        configs = {c for c in glob.glob(osp.join(folder, '*.py'))
                   if not osp.basename(c).startswith('_base_')} - plain  # (shared bases)
        # a method config may name its own plain student (a ViT for the token methods)
        baselines = {osp.join(REPO, Config.fromfile(c).get('student_baseline'))
                     for c in configs if Config.fromfile(c).get('student_baseline')}
        for baseline in baselines:
            assert not is_runnable_distiller_config(baseline)
        expected |= configs - baselines
    # the zoo example (configs/demo/digits/zoo): a sub-folder, so not a demo grid method;
    # its teacher, student and shared data base are plain configs
    zoo = osp.join(DEMO, 'digits', 'zoo')
    assert not any(map(is_runnable_distiller_config, (
        osp.join(zoo, 'convnext-v2-atto_digits-64.py'),
        osp.join(zoo, 'mobilenet-v3-small_digits-64.py'))))
    expected.add(osp.join(zoo, 'dkd-cwd_convnext-v2-atto_mobilenet-v3-small_digits-64.py'))
    # the teacher-assistant chain (configs/demo/digits/takd): two stages, the second reading
    # the first's export, so not grid columns either
    takd = osp.join(DEMO, 'digits', 'takd')
    expected |= {osp.join(takd, 'takd-ta_resnet34-wide_wrn-16-2_digits.py'),
                 osp.join(takd, 'takd_wrn-16-2_resnet18-tiny_digits.py')}
    # the pretrained-backbone variant of the shapes tasks (issue 33): its own folders, whose
    # method configs inherit the from-scratch ones; no shared base, the plain configs are the
    # variant's student and teacher
    for folder, plain in (('shapes_det_pt', ('retinanet_r18-tiny_fpn_shapes_pt.py',
                                             'retinanet_r34-wide_fpn_shapes_pt.py')),
                          ('shapes_seg_pt', ('deeplabv3_r18-tiny-d8_shapes_pt.py',
                                             'deeplabv3_r34-wide-d8_shapes_pt.py'))):
        configs = set(glob.glob(osp.join(DEMO, folder, '*.py')))
        plain = {osp.join(DEMO, folder, name) for name in plain}
        assert plain <= configs and not any(map(is_runnable_distiller_config, plain))
        configs = {c for c in configs if not osp.basename(c).startswith("_base_")}
        assert len(configs - plain) == 5
        expected |= configs - plain
    assert set(DEMO_DISTILL) == expected and len(DEMO_DISTILL) == 81
    assert sorted(DEMO_DISTILL) == DEMO_DISTILL


def test_discovery_reads_the_merged_model_not_the_file_text(tmp_path):
    digits = osp.join(REPO, 'configs', 'demo', 'digits')
    kd = osp.join(digits, 'kd_resnet34-wide_resnet18-tiny_digits.py')
    files = {
        # inherits a distiller with blocks; its own text names no distiller
        'a_inherits.py': f'_base_ = {kd!r}\n',
        # a plain classifier whose comment names the distiller
        'b_plain.py': f"# not mmkd.Distiller\n_base_ = "
                      f"{osp.join(digits, 'resnet18-tiny_digits.py')!r}\n",
        # a distiller without blocks: a base to inherit, not a config to run
        'c_no_blocks.py': f"_base_ = {osp.join(digits, '_base_distill.py')!r}\n",
        # a complete distiller, but named as a shared base
        '_base_copy.py': f'_base_ = {kd!r}\n',
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    assert find_distiller_configs(str(tmp_path)) == [str(tmp_path / 'a_inherits.py')]
    with pytest.raises(FileNotFoundError, match='not a directory'):
        find_distiller_configs(str(tmp_path / 'missing'))


def test_package_metafiles_are_parsed_once_and_callers_get_copies(tmp_path, monkeypatch):
    """mmkd caches MMEngine's parse of a package's metafiles (``mmdet::`` bases re-read
    about a hundred YAML files each time): the same answers, a caller's change does not reach
    the cache, and a changed file is read again."""
    from mmengine.config import utils as config_utils

    from mmkd.utils import metafile_cache
    assert config_utils.load.mmkd_metafile_cache  # installed by `import mmkd`
    calls = []
    original = config_utils.load.__wrapped__
    monkeypatch.setattr(config_utils, 'load', metafile_cache.cached_metafile_load(
        lambda f, *a, **k: calls.append(f) or original(f, *a, **k)))
    mim = tmp_path / 'pkg' / '.mim'
    (mim / 'configs' / 'net').mkdir(parents=True)
    (mim / 'model-index.yml').write_text('Import:\n  - configs/net/metafile.yml\n')
    meta = mim / 'configs' / 'net' / 'metafile.yml'
    meta.write_text('Models:\n  - Name: a\n    Config: configs/net/net_a.py\n')
    package = str(tmp_path / 'pkg')
    first = config_utils._get_cfg_metainfo(package, 'net/net_a.py')
    assert first == dict(Name='a', Config='configs/net/net_a.py') and len(calls) == 2
    first['Config'] = 'changed by a caller'
    again = config_utils._get_cfg_metainfo(package, 'net/net_a.py')
    assert again['Config'] == 'configs/net/net_a.py'
    assert len(calls) == 2  # parsed once
    with pytest.raises(ValueError, match='net/net_b.py'):  # MMEngine's answer: unknown name
        config_utils._get_cfg_metainfo(package, 'net/net_b.py')
    meta.write_text('Models:\n  - Name: b\n    Config: configs/net/net_b.py\n  ')  # new size
    assert config_utils._get_cfg_metainfo(package, 'net/net_b.py')['Name'] == 'b'
    assert len(calls) == 3  # the changed file read again
    # is_installed (a pkg_resources reload a call) asks once per package found installed
    from mmengine.config import config as config_module
    asked = []
    remembered = metafile_cache.remembered_when_installed(lambda p: asked.append(p) or p == 'x')
    assert config_module.is_installed.mmkd_metafile_cache  # installed by `import mmkd`
    assert [remembered('x'), remembered('x'), remembered('y'), remembered('y')] == [
        True, True, False, False] and asked == ['x', 'y', 'y']
    # a real package: the same config as without the cache
    path = osp.join(REPO, 'configs', 'ld', 'gfl_r18_fpn_1x_coco.py')
    cached_text = Config.fromfile(path).pretty_text
    monkeypatch.setattr(config_utils, 'load', original)
    assert Config.fromfile(path).pretty_text == cached_text


def test_tool_config_formats_its_text_once_per_content(monkeypatch):
    """The Runner asks for ``cfg.pretty_text`` five times a run (a yapf pass each): the tools'
    config makes it once, equal to MMEngine's, and again only when the content changed."""
    import copy

    from mmkd.utils.tool_config import ToolConfig, load_tool_config
    path = osp.join(DEMO, 'shapes_det', 'vkd_retinanet_r34-wide_r18-tiny_fpn_shapes.py')
    cfg = load_tool_config(path, 'none', None, 'work_dirs/x')
    plain = Config.fromfile(path)
    plain.launcher, plain.work_dir = 'none', 'work_dirs/x'
    assert isinstance(cfg, ToolConfig) and cfg.pretty_text == plain.pretty_text
    calls = []
    original = Config.pretty_text
    monkeypatch.setattr(Config, 'pretty_text', property(
        lambda self: calls.append(1) or original.fget(self)))
    runner_copy = copy.deepcopy(cfg)  # what the Runner keeps
    assert isinstance(runner_copy, ToolConfig)
    texts = {runner_copy.pretty_text for _ in range(5)}
    assert len(texts) == 1 and calls == []  # made when first asked, before the copy
    runner_copy.model.blocks.fpn.loss_weight = 3.0
    assert 'loss_weight=3.0' in runner_copy.pretty_text and len(calls) == 1
    runner_copy.pretty_text
    assert len(calls) == 1 and 'loss_weight=3.0' not in cfg.pretty_text


def test_tool_config_turns_val_teachers_on_for_the_agreement_metric(tmp_path):
    """An evaluator holding ``TeacherStudentAgreement`` without teachers of its own makes the
    tools set ``model.val_teachers`` (all teachers, or the names the metrics select); a config
    that sets it, or a metric given teacher configs, is left alone."""
    from mmkd.utils.tool_config import load_tool_config
    path = osp.join(DEMO, 'digits', 'kd_resnet34-wide_resnet18-tiny_digits.py')
    agreement = dict(type='mmkd.TeacherStudentAgreement')

    def loaded(**options):
        return load_tool_config(path, 'none', options, str(tmp_path)).model.get('val_teachers')
    assert loaded() is None
    assert loaded(test_evaluator=[dict(type='Accuracy'), agreement]) is True
    assert loaded(val_evaluator=dict(metrics=[dict(agreement, teachers=['teacher'])])) == [
        'teacher']
    assert loaded(val_evaluator=agreement, **{'model.val_teachers': False}) is False
    assert loaded(val_evaluator=dict(agreement, teachers=dict(t=dict(config='x.py')))) is None
