"""End to end through the command-line tools, as a user runs them (CPU, a few iterations)."""
import json
import os
import os.path as osp
import re

import pytest
import torch
from mmengine.config import Config

from mmkd.utils.tool_config import find_distiller_configs

from conftest import (DEMO, DIGITS, SEG, assert_blocks_logged, run_tool, shapes_options,
                      teacher_checkpoint_options)


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
    assert_blocks_logged(DIGITS['distill'], out)
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

    # The export step forgotten (the distillation checkpoint with the student's plain
    # config): the student part is tested, saying so (the other pairings: test_distiller.py).
    forgot_export = run_tool(['tools/test.py', DIGITS['student'], str(work / 'epoch_1.pth'),
                              '--work-dir', str(tmp_path / 'e')]).stdout
    assert 'is a distillation checkpoint' in forgot_export
    assert 'extract_student.py' in forgot_export
    assert metric(forgot_export, 'accuracy/top1') == student_acc


def test_tools_refuse_damaged_checkpoints_and_a_changed_objective(digits_run, teacher_ckpts,
                                                                  tmp_path):
    """As a user runs them (issue 28, items 6, 8, 14): tools/test.py on a checkpoint with a
    corrupted record (it used to score the wrong weights and exit 0), --resume of a truncated
    file, and --resume with a changed method argument (it used to continue silently)."""
    import concurrent.futures
    from test_failure_catalogue import corrupted, truncated
    work, _ = digits_run
    ckpt = str(work / 'epoch_1.pth')
    bad = dict(crc=corrupted(ckpt, str(tmp_path / 'crc.pth')),
               cut=truncated(ckpt, str(tmp_path / 'cut.pth')))
    teacher = f'model.teacher.checkpoint={teacher_ckpts["digits"]}'
    runs = dict(
        test_crc=['tools/test.py', DIGITS['distill'], bad['crc'], '--cfg-options', teacher],
        resume_cut=['tools/train.py', DIGITS['distill'], '--resume', bad['cut'],
                    '--cfg-options', teacher],
        resume_tau=['tools/train.py', DIGITS['distill'], '--resume', ckpt, '--cfg-options',
                    teacher, 'model.blocks.logits.method.tau=2.0', 'train_cfg.max_epochs=1'])

    def run(name):
        return run_tool([*runs[name], '--work-dir', str(tmp_path / name)], check=False)

    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        out = {name: proc for name, proc in zip(runs, pool.map(run, runs))}
    expected = dict(
        test_crc=['DamagedCheckpointError', bad['crc'], 'fails its CRC-32 check'],
        resume_cut=['DamagedCheckpointError', bad['cut'], 'not a complete zip archive'],
        resume_tau=['ObjectiveChangedError', 'model.blocks.logits.method.tau: 4.0 -> 2.0',
                    '--allow-objective-change'])
    for name, words in expected.items():
        assert out[name].returncode != 0, f'{name}:\n{out[name].stdout[-3000:]}'
        for word in words:
            assert word in out[name].stdout, f'{name}: {word!r}\n{out[name].stdout[-3000:]}'
    assert 'accuracy/top1' not in out['test_crc'].stdout


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


def test_amp_without_gpu_is_a_clear_error(teacher_ckpts, tmp_path):
    if torch.cuda.is_available():
        pytest.skip('a GPU is present: --amp is valid here')
    proc = run_tool(['tools/train.py', DIGITS['distill'], '--amp', '--work-dir', str(tmp_path)],
                    check=False)
    assert proc.returncode != 0 and '--amp' in proc.stdout and 'CUDA' in proc.stdout


DEMO_DISTILL = find_distiller_configs(DEMO, recursive=True)
# Demo configs that other tests already train through tools/train.py, checking the same log.
TRAINED_ELSEWHERE = {
    'digits/kd_resnet34-wide_resnet18-tiny_digits.py',  # digits_run above
    'shapes_det/diffkd_retinanet_r34-wide_r18-tiny_fpn_shapes.py',  # tests/test_resume.py
    'digits/vkd_resnet34-wide_resnet18-tiny_digits.py',  # tests/test_resume.py
    'shapes_seg/rtk-both_deeplabv3_r18-tiny-d8_shapes.py',  # tests/test_multi_teacher.py
    'digits/ibt_resnet34-wide+rednet-tiny_civt-tiny_digits.py',  # tests/test_ib_tokens.py
    'digits/letkd-2_resnet34-wide_resnet18-tiny_digits.py',  # tests/test_letkd.py
    # the zoo example, with its own random ConvNeXt teacher: tests/test_zoo_and_strides.py
    'digits/zoo/dkd-cwd_convnext-v2-atto_mobilenet-v3-small_digits-64.py',
}


# The IQA demo's distillation configs (RKIQT) are trained in tests/test_rkiqt.py, with their
# own random teachers. The shapes tasks' pretrained variant (shapes_*_pt: the from-scratch
# method configs with pretrained backbones) is built and trained in
# tests/test_pretrained_variant.py, with a real pretraining.
VARIANT_FOLDERS = ('shapes_det_pt/', 'shapes_seg_pt/')
SMOKE_CONFIGS = [p for p in DEMO_DISTILL if osp.relpath(p, DEMO) not in TRAINED_ELSEWHERE
                 and not osp.relpath(p, DEMO).startswith(('iqa/', *VARIANT_FOLDERS))]


@pytest.mark.parametrize('folder', sorted({osp.basename(osp.dirname(p)) for p in SMOKE_CONFIGS}))
def test_every_demo_distillation_config_trains_a_few_iterations(folder, tmp_path, shapes_root,
                                                                 teacher_ckpts):
    """Each method's demo config, through tools/train.py's main: every block logs its losses.
    One process per task folder (tests/train_in_sequence.py), one Runner per config."""
    paths = [p for p in SMOKE_CONFIGS if osp.basename(osp.dirname(p)) == folder]
    runs = []
    for i, path in enumerate(paths):
        opts = [*teacher_checkpoint_options(path, teacher_ckpts),
                'default_hooks.logger.interval=1']
        task = osp.relpath(path, DEMO).split(os.sep)[0]  # (a sub-folder's task: digits/takd)
        if task == 'digits':
            opts += ['train_cfg.max_epochs=1', 'train_dataloader.dataset.indices=96',
                     'train_dataloader.batch_size=32', 'val_dataloader.dataset.indices=32']
        else:
            opts += [*shapes_options(shapes_root, det=task == 'shapes_det'),
                     'train_cfg.max_iters=3', 'train_cfg.val_interval=3']
        runs.append([path, '--work-dir', str(tmp_path / str(i)), '--cfg-options', *opts])
    (tmp_path / 'runs.json').write_text(json.dumps(runs))
    out = run_tool(['tests/train_in_sequence.py', str(tmp_path / 'runs.json')],
                   check=False).stdout
    problems = []
    for i, path in enumerate(paths):
        name = osp.relpath(path, DEMO)
        part = re.search(rf'@@ run {i} begin\n(.*?)@@ run {i} (ok|failed)\n', out, re.S)
        if part is None or part.group(2) != 'ok':
            problems.append(f'{name}: did not finish:\n'
                            f'{(part.group(1) if part else out)[-3000:]}')
            continue
        try:
            assert_blocks_logged(path, part.group(1))
        except AssertionError as err:
            problems.append(f'{name}: {err}')
    assert not problems, '\n\n'.join(problems)
    assert paths
