"""Loss curves (issue 29, item 2): TensorBoard event files from a run, every block's loss
weight in the log, and tools/analysis/plot_curves.py on a real run's work_dir."""
import glob
import importlib.util
import json
import os.path as osp

import pytest

from conftest import DIGITS, REPO, random_teacher_checkpoint, run_tool

TOOL = osp.join(REPO, 'tools', 'analysis', 'plot_curves.py')
# The two-line user config of docs/getting_started.md, "Loss curves".
TENSORBOARD_CONFIG = """_base_ = {base!r}
visualizer = dict(vis_backends=[dict(type='LocalVisBackend'), dict(type='TensorboardVisBackend')])
"""


def plot_curves():
    spec = importlib.util.spec_from_file_location('plot_curves', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory):
    """The digits logit-KD demo config through tools/train.py with TensorBoard turned on: 2
    epochs of 2 iterations (32 images, batch 16), a log line per iteration, validation on 32
    images after each epoch."""
    root = tmp_path_factory.mktemp('curves')
    teacher = random_teacher_checkpoint(DIGITS['teacher'], str(root / 'teacher.pth'))
    config = root / 'kd_digits_tensorboard.py'
    config.write_text(TENSORBOARD_CONFIG.format(base=DIGITS['distill']))
    work = root / 'work'
    run_tool(['tools/train.py', str(config), '--work-dir', str(work), '--cfg-options',
              f'model.teacher.checkpoint={teacher}', 'train_cfg.max_epochs=2',
              'train_cfg.val_interval=1', 'train_dataloader.batch_size=16',
              'train_dataloader.dataset.indices=32', 'val_dataloader.dataset.indices=32',
              'default_hooks.logger.interval=1'])
    return work


def scalars(work):
    (path,) = glob.glob(str(work / '*' / 'vis_data' / 'scalars.json'))
    with open(path) as f:
        return [json.loads(line) for line in f]


def test_tensorboard_backend_writes_event_files(tiny_run):
    events = glob.glob(str(tiny_run / '*' / 'vis_data' / 'events.out.tfevents.*'))
    assert events and all(osp.getsize(e) > 0 for e in events)


def test_constant_loss_weight_is_logged(tiny_run):
    train = [r for r in scalars(tiny_run) if 'iter' in r]
    assert len(train) == 4  # 2 epochs x 2 iterations, a record each
    assert all(r['distill.logits.weight'] == 1.0 for r in train)  # loss_weight=1.0, constant
    (log,) = glob.glob(str(tiny_run / '*' / '*.log'))
    assert 'distill.logits.weight: 1.0000' in open(log).read()


def test_plot_curves_on_a_run(tiny_run, tmp_path, capsys):
    # As a user runs it: the defaults, the PNG next to the run.
    out = run_tool(['tools/analysis/plot_curves.py', str(tiny_run)]).stdout
    png = tiny_run / 'curves.png'
    assert f'wrote {png}' in out
    for key in ('student.loss', 'distill.logits.loss_kd', 'distill.logits.weight',
                'accuracy/top1'):
        assert key in out
    import matplotlib.image
    image = matplotlib.image.imread(str(png))
    assert osp.getsize(png) > 10_000 and image.shape[0] > 300 and image.std() > 0.05

    tool = plot_curves()
    plotted = tool.main([str(tiny_run), '--out', str(tmp_path / 'a.png')])
    assert sorted(k for keys in plotted.values() for k in keys) == sorted(
        ['loss', 'student.loss', 'distill.logits.loss_kd', 'distill.logits.weight',
         'accuracy/top1'])  # not lr, time, data_time
    assert plotted['validation'] == ['accuracy/top1']
    assert [k for p, keys in plotted.items() if p.startswith('loss weights')
            for k in keys] == ['distill.logits.weight']
    # Chosen keys and patterns, by epoch (the loader's length from the text log), smoothed.
    plotted = tool.main([str(tiny_run), 'distill.*', 'lr', '--x', 'epoch', '--smooth', '2',
                         '--out', str(tmp_path / 'b.png')])
    assert sorted(k for keys in plotted.values() for k in keys) == sorted(
        ['distill.logits.loss_kd', 'distill.logits.weight', 'lr'])
    assert osp.getsize(tmp_path / 'b.png') > 10_000
    assert 'plotted [' in capsys.readouterr().out


def test_plot_curves_reports_a_missing_key(tiny_run, tmp_path):
    tool = plot_curves()
    with pytest.raises(SystemExit) as e:
        tool.main([str(tiny_run), 'distill.logits.loss_kd', 'distill.logits.gamma',
                   '--out', str(tmp_path / 'c.png')])
    message = str(e.value)
    assert "no key 'distill.logits.gamma'" in message
    assert 'training keys found:' in message and 'distill.logits.loss_kd' in message
    assert 'validation keys found: accuracy/top1' in message
    assert not (tmp_path / 'c.png').exists()


def write_run(work, stamp, lines):
    vis = work / stamp / 'vis_data'
    vis.mkdir(parents=True)
    (vis / 'scalars.json').write_text(''.join(lines))


def test_plot_curves_picks_runs_and_reads_a_file_still_being_written(tmp_path, capsys):
    tool = plot_curves()
    record = '{{"lr": 0.1, "loss": {0}, "student.loss": {0}, "iter": {1}, "step": {1}}}\n'
    write_run(tmp_path, '20260101_000000', [record.format(3.0, i) for i in (1, 2, 3)])
    # The newest run, its last line half-written, and no epoch (an iteration-based run).
    write_run(tmp_path, '20260102_000000', [record.format(2.0, 1), record.format(1.0, 2),
                                            '{"accuracy/top1": 50.0, "step": 2}\n',
                                            '{"lr": 0.1, "loss": 0.'])
    plotted = tool.main([str(tmp_path)])
    out = capsys.readouterr().out
    assert '20260102_000000' in out and 'skipped the incomplete last line (4)' in out
    assert '2 training and 1 validation records' in out
    assert plotted['validation'] == ['accuracy/top1']
    # MMEngine writes step 0 for a validation of an iteration-based run (the epoch): it is
    # drawn at the iteration it followed
    train, val = tool.read_scalars(str(tmp_path / '20260102_000000' / 'vis_data' /
                                       'scalars.json'))
    val[0]['step'] = 0
    assert tool.validation_positions(train, val) == [2]
    assert tool.validation_positions([dict(train[0], epoch=1)], val) == [0]  # epoch-based
    tool.main([str(tmp_path), '--run', '20260101_000000', '--out', str(tmp_path / 'old.png')])
    assert '3 training and 0 validation records' in capsys.readouterr().out
    with pytest.raises(SystemExit, match='iteration-based run.*--x iter'):
        tool.main([str(tmp_path), '--x', 'epoch'])
    with pytest.raises(SystemExit, match=r"no run '2025' .*runs there: \['20260101_000000'"):
        tool.main([str(tmp_path), '--run', '2025'])
    # A bad line before the end is damage, not a run still writing.
    write_run(tmp_path, '20260103_000000', ['{"loss": \n', record.format(1.0, 1)])
    with pytest.raises(SystemExit, match=r'line 1: not a JSON object.*damaged'):
        tool.main([str(tmp_path)])
    with pytest.raises(SystemExit, match=r'no <timestamp>/vis_data/scalars.json .*LocalVisBackend'):
        tool.main([str(tmp_path / '20260101_000000' / 'vis_data')])
    with pytest.raises(SystemExit) as e:
        tool.main(['--help'])
    assert e.value.code == 0 and 'WORK_DIR' in capsys.readouterr().out
