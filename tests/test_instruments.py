"""tools/analysis/instruments.py: the agreement metric (and gradient shares) over a grid's runs.

A fake grid of two runs, laid out as tools/benchmark/quality.py leaves them (``digits/
<method>_seed<seed>/`` with the config the run dumped and ``last_checkpoint``): a distilled
student (its teacher from the run's own config) and a plain student (the task teacher given on
the command line). Weights are random: what is checked is that each run is evaluated with the
right teacher and that the table is made from the runs' numbers.
"""
import json
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from conftest import DIGITS, build, digits_cfg, run_tool


def fake_run(root, name, config: Config, state_dict):
    path = osp.join(root, 'digits', f'{name}_seed0')
    import os
    os.makedirs(path)
    config.dump(osp.join(path, 'run_config.py'))
    torch.save(dict(state_dict=state_dict, meta=dict(epoch=1)), osp.join(path, 'epoch_1.pth'))
    with open(osp.join(path, 'last_checkpoint'), 'w') as f:
        f.write(osp.join(path, 'epoch_1.pth'))
    return path


def small_test_split(cfg):
    cfg.test_dataloader.dataset.indices = 24
    cfg.test_dataloader.batch_size = 8
    return cfg


def test_instruments_over_a_distilled_and_a_plain_run(tmp_path, teacher_ckpts):
    root = str(tmp_path / 'grid')
    kd = small_test_split(Config.fromfile(DIGITS['distill']))
    kd.model.teacher.checkpoint = teacher_ckpts['digits']
    kd.train_dataloader.batch_size = 8
    torch.manual_seed(0)
    distiller = build(digits_cfg(teacher_ckpts['digits'], dry_run_input_shape=(2, 3, 32, 32)))
    fake_run(root, 'kd', kd, distiller.state_dict())
    plain = small_test_split(Config.fromfile(DIGITS['student']))
    fake_run(root, 'student', plain, distiller.student.state_dict())
    out = tmp_path / 'out'
    proc = run_tool(['tools/analysis/instruments.py', root, '--task', 'classification',
                     '--methods', 'student', 'kd', '--seeds', '0', '--grad-shares',
                     '--batches', '1', '--teacher-checkpoint', teacher_ckpts['digits'],
                     '--out', str(out)])
    runs = json.loads((out / 'instruments.json').read_text())['runs']
    assert [r['method'] for r in runs] == ['student', 'kd']
    student, kd_run = (r['values'] for r in runs)
    # The same student weights and the same teacher, one through the distiller's own teacher
    # (val_teachers), one through the metric's: the same numbers.
    for key in ('accuracy/top1', 'agreement/teacher/top1', 'agreement/teacher/kl',
                'agreement/teacher/teacher_ece', 'agreement/student_ece'):
        assert kd_run[key] == pytest.approx(student[key], rel=1e-5), key
    assert kd_run['agreement/student_acc'] * 100 == pytest.approx(kd_run['accuracy/top1'])
    assert -1 <= kd_run['grad/distill.logits/cos_task'] <= 1
    assert kd_run['grad/distill.logits/norm_over_task'] > 0
    assert not any(k.startswith('grad/') for k in student)  # no blocks: none measured
    table = (out / 'instruments.md').read_text()
    assert '| kd | 1 |' in table and '| student | 1 |' in table and 'top1' in table
    assert table in proc.stdout


def test_instruments_names_a_missing_run(tmp_path):
    proc = run_tool(['tools/analysis/instruments.py', str(tmp_path), '--task', 'classification',
                     '--methods', 'kd', '--out', str(tmp_path / 'out')], check=False)
    assert proc.returncode != 0
    assert osp.join(str(tmp_path), 'digits', 'kd_seed0') in proc.stdout
    assert 'no such run' in proc.stdout


def test_analysis_runner_puts_schedules_at_the_checkpoints_last_step(tmp_path, teacher_ckpts):
    """A tool reading a checkpoint measures the losses with the weights that step trained with:
    DKD's digits warm-up (min(iteration / 18, 1)) as it was at the checkpoint's last
    iteration, not its first value (1/18)."""
    from mmkd.analysis import analysis_runner
    config = 'configs/demo/digits/dkd_resnet34-wide_resnet18-tiny_digits.py'
    options = {'model.teacher.checkpoint': teacher_ckpts['digits']}
    with analysis_runner(config, None, options) as runner:
        assert runner.model.blocks['logits'].loss_weight.current() == pytest.approx(1 / 18)
        state = runner.model.state_dict()
    for meta, weight in ((dict(epoch=0, iter=9), 9 / 18), (dict(epoch=10, iter=210), 1.0)):
        path = str(tmp_path / f'iter_{meta["iter"]}.pth')
        torch.save(dict(state_dict=state, meta=meta), path)
        with analysis_runner(config, path, options) as runner:
            assert runner.model.blocks['logits'].loss_weight.current() == pytest.approx(weight)
