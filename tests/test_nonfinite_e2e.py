"""The non-finite-loss policy through the command-line tools, in one and in two processes."""
import os.path as osp
import sys

from conftest import DIGITS, REPO, run_tool
from test_distributed import assert_same_weights, free_port, weights

HOOKS = osp.join(REPO, 'tests')


def _config(tmp_path, teacher, policy, rank):
    path = tmp_path / f'nan_{policy}.py'
    path.write_text('\n'.join([
        f'_base_ = {DIGITS["distill"]!r}',
        f'model = dict(teacher=dict(checkpoint={teacher!r}), nonfinite_loss={policy!r})',
        "custom_imports = dict(imports=['mmkd', 'nonfinite_hook', 'dist_probe_hook'])",
        f'custom_hooks = [dict(type="NaNStudentLogitsAt", iteration=2, rank={rank}), '
        'dict(type="DumpRankWeights")]',
        'train_cfg = dict(max_epochs=1)',
        'train_dataloader = dict(batch_size=32, dataset=dict(indices=256))',
        'val_dataloader = dict(dataset=dict(indices=32))',
        'default_hooks = dict(logger=dict(interval=1))']) + '\n')
    return str(path)


def test_first_nonfinite_loss_stops_the_run_naming_term_and_iteration(tmp_path, teacher_ckpts):
    cfg = _config(tmp_path, teacher_ckpts['digits'], 'raise', 0)
    proc = run_tool(['tools/train.py', cfg, '--work-dir', str(tmp_path / 'w')], check=False,
                    env=dict(PYTHONPATH=HOOKS))
    assert proc.returncode != 0
    for words in ('NonFiniteError', 'Non-finite loss at iteration 2', 'student.loss = NaN',
                  'distill.logits.loss_kd = NaN', 'Input batch: finite',
                  "The teacher's recorded values: all finite",
                  "The student's recorded values: non-finite at ['head.fc']"):
        assert words in proc.stdout, (words, proc.stdout[-3000:])
    assert not (tmp_path / 'w' / 'epoch_1.pth').exists()


def test_skip_policy_in_two_processes_skips_the_step_on_every_rank(tmp_path, teacher_ckpts):
    """Rank 1's loss is NaN at iteration 2: both ranks skip that step (DDP stays in step),
    training goes on, and both ranks end with the same finite weights (a rank that stepped
    alone would have left them out of sync)."""
    cfg = _config(tmp_path, teacher_ckpts['digits'], 'skip', 1)
    work = tmp_path / 'w'
    proc = run_tool(['bash', 'tools/dist_train.sh', cfg, '2', '--work-dir', str(work)],
                    env=dict(PYTHONPATH=HOOKS, PYTHON=sys.executable, PORT=str(free_port()),
                             OMP_NUM_THREADS='1'))
    assert "Policy nonfinite_loss='skip'" in proc.stdout
    assert 'nonfinite_skips: 1.0' in proc.stdout and 'Epoch(train) [1][4/4]' in proc.stdout
    a, b = weights(work, 0), weights(work, 1)
    assert_same_weights(a, b, parameters_only=True)  # each rank has its own BN statistics
    for key, value in a['state_dict'].items():
        assert not value.is_floating_point() or value.isfinite().all(), key
