"""Resume: exact (random-number states in the checkpoint), robust to a damaged latest
checkpoint, and checkpoints written atomically."""
import os
import os.path as osp
import random
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch
from mmengine.fileio import get_file_backend

from mmkd.hooks import capture_random_state, restore_random_state
from mmkd.utils import AtomicLocalBackend, checkpoint_damage, find_resumable_checkpoint
from mmkd.utils.checkpoint import safe_torch_load
from mmkd.utils.tool_config import find_distiller_configs

from conftest import (DEMO, REPO, assert_blocks_logged, run_tool, shapes_options,
                      teacher_checkpoint_options)

DIFFKD_DET = osp.join(DEMO, 'shapes_det', 'diffkd_retinanet_r34-wide_r18-tiny_fpn_shapes.py')
VKD_DIGITS = osp.join(DEMO, 'digits', 'vkd_resnet34-wide_resnet18-tiny_digits.py')


# ------------------------------------------------------------------ units
def test_random_state_round_trip_and_safe_to_load(tmp_path):
    torch.manual_seed(3), np.random.seed(3), random.seed(3)
    np.random.randn()  # a cached gaussian is part of numpy's state
    state = capture_random_state()
    expected = (torch.rand(3), np.random.rand(3), random.random(), np.random.randn())
    torch.save(dict(random_state=state), tmp_path / 's.pth')
    restore_random_state(safe_torch_load(str(tmp_path / 's.pth'))['random_state'])
    again = (torch.rand(3), np.random.rand(3), random.random(), np.random.randn())
    assert torch.equal(expected[0], again[0]) and np.array_equal(expected[1], again[1])
    assert expected[2:] == again[2:]


def test_local_writes_are_atomic(tmp_path):
    backend = get_file_backend(str(tmp_path / 'x.pth'))
    assert isinstance(backend, AtomicLocalBackend)  # what save_checkpoint/CheckpointHook use
    path = tmp_path / 'iter_2.pth'
    backend.put(b'complete old checkpoint', str(path))

    def failing_write(*args):  # the save dies before it completes (a kill, a full disk)
        raise KeyboardInterrupt('killed during the save')
    import mmkd.utils.atomic_io as atomic_io
    original = atomic_io.os.replace
    atomic_io.os.replace = failing_write
    try:
        with pytest.raises(KeyboardInterrupt):
            backend.put(b'new but never finished', str(path))
    finally:
        atomic_io.os.replace = original
    assert path.read_bytes() == b'complete old checkpoint'
    assert os.listdir(tmp_path) == ['iter_2.pth']  # no temporary file left behind
    backend.put_text('iter_2.pth', str(tmp_path / 'last_checkpoint'))
    assert (tmp_path / 'last_checkpoint').read_text() == 'iter_2.pth'
    assert oct(os.stat(path).st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_kill_during_a_save_never_leaves_a_truncated_checkpoint(tmp_path):
    """A process saving a 64 MB checkpoint in a loop with MMEngine's save_checkpoint is
    SIGKILLed at random moments: the file under the final name is always complete."""
    path = tmp_path / 'iter_1.pth'
    script = textwrap.dedent(f'''
        import sys; sys.path.insert(0, {REPO!r})
        import torch, mmkd
        from mmengine.runner.checkpoint import save_checkpoint
        ckpt = dict(state_dict=dict(w=torch.randn(16 * 1024 * 1024)))
        while True:
            save_checkpoint(ckpt, {str(path)!r})
    ''')
    rng = random.Random(0)
    for attempt in range(3):
        proc = subprocess.Popen([sys.executable, '-c', script])
        try:
            deadline = time.time() + 60
            while not path.exists() and time.time() < deadline:
                time.sleep(0.05)
            time.sleep(rng.uniform(0.05, 0.6))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        assert path.exists(), 'the child never saved'
        assert checkpoint_damage(str(path)) is None, checkpoint_damage(str(path))
    leftovers = [f for f in os.listdir(tmp_path) if f != 'iter_1.pth']
    assert all(f.endswith('.tmp') for f in leftovers)  # only a killed write's own temp file


def test_damage_detection_and_fallback(tmp_path):
    good = tmp_path / 'iter_2.pth'  # what a Runner checkpoint holds (resume candidates only)
    torch.save(dict(meta={}, state_dict=dict(w=torch.randn(1000)), message_hub={}), good)
    time.sleep(0.01)
    data = good.read_bytes()
    (tmp_path / 'iter_4.pth').write_bytes(data[:len(data) // 2])  # truncated
    flipped = bytearray(data)
    flipped[len(data) // 3] ^= 0xFF  # a flipped byte inside the tensor record
    (tmp_path / 'iter_6.pth').write_bytes(bytes(flipped))
    assert checkpoint_damage(str(good)) is None
    assert 'truncated' in checkpoint_damage(str(tmp_path / 'iter_4.pth'))
    assert 'CRC' in checkpoint_damage(str(tmp_path / 'iter_6.pth'))
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_4.pth'))
    assert find_resumable_checkpoint(str(tmp_path)) == str(good)
    assert find_resumable_checkpoint(str(tmp_path / 'empty_dir_does_not_exist')) is None
    good.unlink()
    with pytest.raises(RuntimeError, match='No readable checkpoint.*iter_4.pth.*iter_6.pth|'
                                           'No readable checkpoint.*iter_6.pth.*iter_4.pth'):
        find_resumable_checkpoint(str(tmp_path))


# ------------------------------------------------------------------ through tools/train.py
def _user_config(tmp_path, base, teacher, name, interrupt=None, lines=()):
    """A user config inheriting ``base``; ``interrupt``: e.g. 'iteration=3' or 'epoch=1'."""
    text = [f'_base_ = {base!r}', *lines]
    if teacher is not None:  # else the teachers' checkpoints come as --cfg-options
        text.insert(1, f'model = dict(teacher=dict(checkpoint={teacher!r}))')
    if interrupt:
        text += ["custom_imports = dict(imports=['mmkd', 'interrupt_hook'])",
                 f'custom_hooks = [dict(type="InterruptTrainingAt", {interrupt})]']
    path = tmp_path / f'{name}_{(interrupt or "full").replace("=", "")}.py'
    path.write_text('\n'.join(text) + '\n')
    return str(path)


def _assert_same_weights(a_path, b_path):
    a, b = safe_torch_load(a_path)['state_dict'], safe_torch_load(b_path)['state_dict']
    assert set(a) == set(b) and any(k.startswith('student.') for k in a)
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f'{len(different)} tensors differ, e.g. {different[:5]}'


def test_diffkd_detection_resume_is_bit_exact_and_survives_a_damaged_latest_checkpoint(
        tmp_path, shapes_root, teacher_ckpts):
    """Iteration-based DiffKD (random timesteps and noise, RandomFlip in the main process):
    interrupted after iteration 3, with the newest checkpoint then damaged, `--resume` falls
    back to iter_2.pth and ends with the uninterrupted run's weights, bit for bit."""
    lines = ['train_cfg = dict(max_iters=4, val_interval=2)',
             'default_hooks = dict(checkpoint=dict(interval=2, max_keep_ckpts=3), '
             'logger=dict(interval=1))']
    opts = ['--cfg-options', *shapes_options(shapes_root, det=True)]
    full = _user_config(tmp_path, DIFFKD_DET, teacher_ckpts['det'], 'det', lines=lines)
    out = run_tool(['tools/train.py', full, '--work-dir', str(tmp_path / 'full'), *opts]).stdout
    assert_blocks_logged(DIFFKD_DET, out)  # (this test stands for it in test_train_e2e.py)

    cut = _user_config(tmp_path, DIFFKD_DET, teacher_ckpts['det'], 'det', 'iteration=3', lines)
    work = tmp_path / 'cut'
    first = run_tool(['tools/train.py', cut, '--work-dir', str(work), *opts], check=False,
                     env=dict(PYTHONPATH=osp.join(REPO, 'tests')))
    assert first.returncode != 0 and 'simulated interruption' in first.stdout
    # A save killed half way (by a writer that is not atomic): the newest file is truncated.
    data = (work / 'iter_2.pth').read_bytes()
    (work / 'iter_3.pth').write_bytes(data[:len(data) // 3])
    (work / 'last_checkpoint').write_text(str(work / 'iter_3.pth'))

    second = run_tool(['tools/train.py', full, '--work-dir', str(work), '--resume', *opts])
    assert 'iter_3.pth is damaged' in second.stdout and 'resuming from the newest readable' \
        in second.stdout
    assert 'resumed epoch: 0, iter: 2' in second.stdout
    assert 'Iter(train) [3/4]' in second.stdout and 'Iter(train) [1/4]' not in second.stdout
    _assert_same_weights(str(tmp_path / 'full' / 'iter_4.pth'), str(work / 'iter_4.pth'))


def test_epoch_based_vkd_resume_is_bit_exact(tmp_path, teacher_ckpts):
    """Epoch-based VkD on the digits (RandomCrop in the main process): interrupted after
    epoch 1 of 2, resumed, equal to the uninterrupted run bit for bit."""
    lines = ['train_cfg = dict(max_epochs=2, val_interval=1)',
             'train_dataloader = dict(batch_size=32, dataset=dict(indices=96))',
             'val_dataloader = dict(dataset=dict(indices=32))',
             'default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=3), '
             'logger=dict(interval=1))']
    full = _user_config(tmp_path, VKD_DIGITS, teacher_ckpts['digits'], 'vkd', lines=lines)
    out = run_tool(['tools/train.py', full, '--work-dir', str(tmp_path / 'full')]).stdout
    assert_blocks_logged(VKD_DIGITS, out)  # (this test stands for it in test_train_e2e.py)
    cut = _user_config(tmp_path, VKD_DIGITS, teacher_ckpts['digits'], 'vkd', 'epoch=1', lines)
    work = tmp_path / 'cut'
    first = run_tool(['tools/train.py', cut, '--work-dir', str(work)], check=False,
                     env=dict(PYTHONPATH=osp.join(REPO, 'tests')))
    assert first.returncode != 0 and (work / 'epoch_1.pth').exists()
    second = run_tool(['tools/train.py', full, '--work-dir', str(work), '--resume'])
    assert 'resumed epoch: 1' in second.stdout
    _assert_same_weights(str(tmp_path / 'full' / 'epoch_2.pth'), str(work / 'epoch_2.pth'))


# The IQA (RKIQT) configs resume through the same student/method checkpoint path; not yet
# in this slow grid (their teachers' random checkpoints live in tests/test_rkiqt.py), nor the
# digits zoo example (its ConvNeXt teacher's in tests/test_zoo_and_strides.py).
DEMO_DISTILL = [p for p in find_distiller_configs(DEMO, recursive=True)
                if not osp.relpath(p, DEMO).startswith(('iqa/', 'digits/zoo/'))]


@pytest.mark.slow
@pytest.mark.parametrize('path', [p for p in DEMO_DISTILL if not osp.relpath(p, DEMO).startswith(
    ('shapes_det_pt/', 'shapes_seg_pt/'))], ids=lambda p: osp.relpath(p, DEMO))  # (variant: as
# the from-scratch configs but for the backbones' init, tests/test_pretrained_variant.py)
def test_every_demo_distiller_resumes_bit_exactly(path, tmp_path, shapes_root, teacher_ckpts):
    """Every demo distillation config: interrupted half way and resumed, bit-identical to the
    uninterrupted run (the two tests above cover the same path for DiffKD and VkD)."""
    folder = osp.basename(osp.dirname(path))
    opts = ['--cfg-options', *teacher_checkpoint_options(path, teacher_ckpts)]
    if folder == 'digits':
        lines = ['train_cfg = dict(max_epochs=2, val_interval=1)',
                 'train_dataloader = dict(batch_size=32, dataset=dict(indices=96))',
                 'val_dataloader = dict(dataset=dict(indices=32))',
                 'default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=3))']
        interrupt, last = 'epoch=1', 'epoch_2.pth'
    else:
        lines = ['train_cfg = dict(max_iters=4, val_interval=2)',
                 'default_hooks = dict(checkpoint=dict(interval=2, max_keep_ckpts=3))']
        interrupt, last = 'iteration=3', 'iter_4.pth'
        opts += shapes_options(shapes_root, det=folder == 'shapes_det')
    full = _user_config(tmp_path, path, None, 'x', lines=lines)
    run_tool(['tools/train.py', full, '--work-dir', str(tmp_path / 'full'), *opts])
    cut = _user_config(tmp_path, path, None, 'x', interrupt, lines)
    first = run_tool(['tools/train.py', cut, '--work-dir', str(tmp_path / 'cut'), *opts],
                     check=False, env=dict(PYTHONPATH=osp.join(REPO, 'tests')))
    assert first.returncode != 0 and 'simulated interruption' in first.stdout
    run_tool(['tools/train.py', full, '--work-dir', str(tmp_path / 'cut'), '--resume', *opts])
    _assert_same_weights(str(tmp_path / 'full' / last), str(tmp_path / 'cut' / last))
