"""End to end through the command-line tools, as a user runs them (CPU, a few iterations)."""
import glob
import os.path as osp
import re
import shutil

import pytest
import torch
from mmengine.config import Config

from conftest import DET, DIGITS, REPO, SEG, run_tool, shapes_options


def metric(output: str, key: str) -> float:
    found = re.findall(rf'{re.escape(key)}: ([0-9.]+)', output)
    assert found, f'{key} not in output:\n{output[-3000:]}'
    return float(found[-1])


@pytest.fixture(scope='module')
def digits_run(tmp_path_factory, teacher_ckpts):
    """One epoch (22 iterations) of logit KD on the digits, via tools/train.py."""
    work = tmp_path_factory.mktemp('digits_kd')
    out = run_tool(['tools/train.py', DIGITS['distill'], '--work-dir', str(work),
                    '--cfg-options', f'model.teacher.checkpoint={teacher_ckpts["digits"]}',
                    'train_cfg.max_epochs=1']).stdout
    return work, out


def test_classification_distillation_trains(digits_run):
    work, out = digits_run
    assert 'student.loss:' in out and 'distill.logits.loss_kd:' in out
    assert osp.isfile(work / 'epoch_1.pth')
    metric(out, 'accuracy/top1')


def test_test_tool_student_teacher_and_exported_student(digits_run, teacher_ckpts, tmp_path):
    work, _ = digits_run
    teacher = teacher_ckpts['digits']
    opt = ['--cfg-options', f'model.teacher.checkpoint={teacher}']
    student_acc = metric(run_tool(['tools/test.py', DIGITS['distill'], str(work / 'epoch_1.pth'),
                                   '--work-dir', str(tmp_path / 'a'), *opt]).stdout,
                         'accuracy/top1')
    # The exported student, in its plain base config, scores exactly the same.
    exported = str(tmp_path / 'student.pth')
    run_tool(['tools/model_converters/extract_student.py', str(work / 'epoch_1.pth'), exported])
    plain_acc = metric(run_tool(['tools/test.py', DIGITS['student'], exported,
                                 '--work-dir', str(tmp_path / 'b')]).stdout, 'accuracy/top1')
    assert plain_acc == student_acc
    # --teacher evaluates the teacher alone: the same as testing the teacher's own config.
    via_flag = metric(run_tool(['tools/test.py', DIGITS['distill'], '--teacher',
                                '--work-dir', str(tmp_path / 'c'), *opt]).stdout,
                      'accuracy/top1')
    direct = metric(run_tool(['tools/test.py', DIGITS['teacher'], teacher,
                              '--work-dir', str(tmp_path / 'd')]).stdout, 'accuracy/top1')
    assert via_flag == direct


def _det_config(tmp_path, shapes_root, teacher, interrupt_at=None):
    """A user config inheriting the demo detection distiller (4 iterations, ckpt every 2)."""
    lines = [f'_base_ = {DET["distill"]!r}',
             f'model = dict(teacher=dict(checkpoint={teacher!r}))',
             'train_cfg = dict(max_iters=4, val_interval=100)',
             'default_hooks = dict(checkpoint=dict(interval=2, max_keep_ckpts=3), '
             'logger=dict(interval=1))']
    if interrupt_at:
        lines += ["custom_imports = dict(imports=['mmkd', 'interrupt_hook'])",
                  f'custom_hooks = [dict(type="InterruptTrainingAt", iteration={interrupt_at})]']
    path = tmp_path / f'det_{interrupt_at or "full"}.py'
    path.write_text('\n'.join(lines) + '\n')
    return str(path)


def test_detection_resume_after_interruption_matches_uninterrupted(tmp_path, shapes_root,
                                                                   teacher_ckpts):
    opts = ['--cfg-options', *shapes_options(shapes_root, det=True)]
    full_cfg = _det_config(tmp_path, shapes_root, teacher_ckpts['det'])
    run_tool(['tools/train.py', full_cfg, '--work-dir', str(tmp_path / 'full'), *opts])

    cut_cfg = _det_config(tmp_path, shapes_root, teacher_ckpts['det'], interrupt_at=3)
    work = tmp_path / 'cut'
    first = run_tool(['tools/train.py', cut_cfg, '--work-dir', str(work), *opts], check=False,
                     env=dict(PYTHONPATH=osp.join(REPO, 'tests')))
    assert first.returncode != 0 and 'simulated interruption' in first.stdout
    assert (work / 'iter_2.pth').exists() and not (work / 'iter_4.pth').exists()
    # Resume with the plain config (no interruption): continues from iteration 2.
    second = run_tool(['tools/train.py', full_cfg, '--work-dir', str(work), '--resume', *opts])
    assert 'resumed epoch: 0, iter: 2' in second.stdout
    assert 'Iter(train) [3/4]' in second.stdout and 'Iter(train) [1/4]' not in second.stdout
    assert 'distill.fpn.loss_mse' in second.stdout

    from mmkd.utils.checkpoint import safe_torch_load
    a = safe_torch_load(str(tmp_path / 'full' / 'iter_4.pth'))
    b = safe_torch_load(str(work / 'iter_4.pth'))
    assert not any(k.startswith('teacher.') for k in a['state_dict'])
    assert any(k.startswith('methods.fpn.') for k in a['state_dict'])
    for k, v in a['state_dict'].items():
        torch.testing.assert_close(b['state_dict'][k], v, rtol=1e-4, atol=1e-5, msg=k)


def test_segmentation_export_gives_identical_predictions(tmp_path, shapes_root, teacher_ckpts):
    work = tmp_path / 'seg'
    run_tool(['tools/train.py', SEG['distill'], '--work-dir', str(work), '--cfg-options',
              f'model.teacher.checkpoint={teacher_ckpts["seg"]}', 'train_cfg.max_iters=3',
              'train_cfg.val_interval=3', 'default_hooks.checkpoint.interval=3',
              *shapes_options(shapes_root, det=False)])
    ckpt = str(work / 'iter_3.pth')
    exported = str(tmp_path / 'student.pth')
    run_tool(['tools/model_converters/extract_student.py', ckpt, exported])

    from mmengine.registry import DefaultScope
    from mmengine.registry import MODELS as ROOT
    from mmengine.runner import load_checkpoint
    from mmengine.dataset import pseudo_collate
    from mmseg.registry import DATASETS
    cfg = Config.fromfile(SEG['distill'])
    cfg.model.teacher.checkpoint = teacher_ckpts['seg']
    plain = Config.fromfile(SEG['student'])
    with DefaultScope.overwrite_default_scope('mmseg'):
        distiller = ROOT.build(cfg.model).eval()
        load_checkpoint(distiller, ckpt, map_location='cpu', strict=True)
        student = ROOT.build(plain.model).eval()
        load_checkpoint(student, exported, map_location='cpu', strict=True)  # = load_from
        ds_cfg = plain.val_dataloader.dataset
        ds_cfg.data_root = shapes_root
        dataset = DATASETS.build(ds_cfg)
        data = pseudo_collate([dataset[i] for i in range(4)])
        with torch.no_grad():
            ours = distiller.test_step(data)
            theirs = student.test_step(data)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a.seg_logits.data, b.seg_logits.data)
        assert torch.equal(a.pred_sem_seg.data, b.pred_sem_seg.data)


def test_dist_train_two_cpu_processes_gloo(tmp_path, teacher_ckpts):
    work = tmp_path / 'dist'
    proc = run_tool(['bash', 'tools/dist_train.sh', DIGITS['distill'], '2', '--work-dir',
                     str(work), '--cfg-options',
                     f'model.teacher.checkpoint={teacher_ckpts["digits"]}',
                     'train_cfg.max_epochs=1'],
                    env=dict(PYTHON=__import__('sys').executable, PORT='29517',
                             OMP_NUM_THREADS='1'))
    assert 'Distributed launcher: pytorch' in proc.stdout or 'launcher: pytorch' in proc.stdout
    assert "world_size: 2" in proc.stdout or 'GPU number: 2' in proc.stdout
    # 1,347 images / (64 per process x 2 processes) -> 11 iterations per epoch.
    assert 'Epoch(train) [1][10/11]' in proc.stdout
    assert (work / 'epoch_1.pth').exists()


def test_amp_without_gpu_is_a_clear_error(teacher_ckpts, tmp_path):
    if torch.cuda.is_available():
        pytest.skip('a GPU is present: --amp is valid here')
    proc = run_tool(['tools/train.py', DIGITS['distill'], '--amp', '--work-dir', str(tmp_path)],
                    check=False)
    assert proc.returncode != 0 and '--amp' in proc.stdout and 'CUDA' in proc.stdout


DEMO_DISTILL = sorted(glob.glob(osp.join(REPO, 'configs', 'demo', '*', '*_*_*.py')))
TASK_OF_FOLDER = dict(digits='digits', shapes_det='det', shapes_seg='seg')


@pytest.mark.parametrize('path', [p for p in DEMO_DISTILL
                                  if 'SingleTeacherDistiller' in open(p).read()],
                         ids=lambda p: osp.relpath(p, osp.join(REPO, 'configs', 'demo')))
def test_every_demo_distillation_config_trains_a_few_iterations(path, tmp_path, shapes_root,
                                                                 teacher_ckpts):
    """Each method's demo config, through tools/train.py: every block logs its losses."""
    folder = osp.basename(osp.dirname(path))
    opts = [f'model.teacher.checkpoint={teacher_ckpts[TASK_OF_FOLDER[folder]]}',
            'default_hooks.logger.interval=1']
    if folder == 'digits':
        opts += ['train_cfg.max_epochs=1', 'train_dataloader.dataset.indices=96',
                 'train_dataloader.batch_size=32', 'val_dataloader.dataset.indices=32']
    else:
        opts += [*shapes_options(shapes_root, det=folder == 'shapes_det'),
                 'train_cfg.max_iters=3', 'train_cfg.val_interval=3']
    out = run_tool(['tools/train.py', path, '--work-dir', str(tmp_path), '--cfg-options',
                    *opts]).stdout
    blocks = Config.fromfile(path).model.blocks
    for name, block in blocks.items():
        logged = re.findall(rf'distill\.{name}\.(\w+): ([-0-9.e]+)', out)
        assert any(k.startswith('loss') for k, _ in logged), (name, out[-3000:])
        if block.method.type == 'DiffKD':  # the method's diagnostic is logged
            gammas = [float(v) for k, v in logged if k == 'gamma']
            assert gammas and all(0 < g < 1 for g in gammas)
    assert re.search(r'student\.[\w.]*loss\w*: [0-9.]+', out)  # and the task losses
