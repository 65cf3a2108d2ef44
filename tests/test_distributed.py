"""Multi-process training through the launch scripts, as CPU processes on gloo: torchrun on one
node (tools/dist_train.sh), torchrun as two nodes, and srun (tools/slurm_*.sh, with a fake srun).

Every run must exit 0 with no gloo thread left at interpreter exit (they made runs abort after
success, see mmkd.utils.dist.tear_down_process_group), and end with the same weights on every
rank and in every layout. Runs are cut to 2 iterations (256 images, 64 per process, 2
processes), each picks a free port, and a run still going after TIMEOUT is killed with its ranks.
"""
import ast
import os
import os.path as osp
import re
import signal
import socket
import subprocess
import sys
import time
from unittest import mock

import pytest
import torch
import torch.distributed as dist

from conftest import DIGITS, REPO
from mmkd.utils.dist import slurm_to_torch_env, tear_down_process_group

TESTS = osp.dirname(osp.abspath(__file__))
FAKE_SLURM = osp.join(TESTS, 'fake_slurm')  # srun and scontrol stand-ins
TIMEOUT = 300  # seconds; a run takes about 30


def free_port() -> int:
    """A port nothing listens on now, so repeated or parallel runs never share one."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def probe_config(folder, teacher: str) -> str:
    """The digits logit-KD config cut to 1 short epoch, with tests/dist_probe_hook.py loaded:
    each rank saves its weights after training and reports its gloo threads."""
    path = folder / 'kd_digits_probe.py'
    path.write_text('\n'.join([
        f'_base_ = {DIGITS["distill"]!r}',
        "custom_imports = dict(imports=['mmkd', 'dist_probe_hook'], allow_failed_imports=False)",
        "custom_hooks = [dict(type='DumpRankWeights')]",
        f'model = dict(teacher=dict(checkpoint={teacher!r}))',
        'train_cfg = dict(max_epochs=1)',
        'train_dataloader = dict(dataset=dict(indices=256))',
        'val_dataloader = dict(dataset=dict(indices=64))',
        'test_dataloader = val_dataloader',
        'default_hooks = dict(logger=dict(interval=1))']) + '\n')
    return str(path)


def launch(runs, folder, timeout=TIMEOUT):
    """Start every ``(name, args, env)`` at once; return ``{name: (exit code, output)}``.

    ``env`` entries set to None are removed from the environment. Each launch gets its own
    session, so that on a timeout or a failure the others are killed with every rank they
    started.
    """
    procs, logs = {}, {}
    try:
        for name, args, env in runs:
            full_env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS='1',
                            PYTHONWARNINGS='ignore',
                            PYTHONPATH=os.pathsep.join(filter(None, [
                                TESTS, os.environ.get('PYTHONPATH')])))
            full_env.update(env)
            logs[name] = folder / f'{name}.log'
            with open(logs[name], 'w') as log:
                procs[name] = subprocess.Popen(
                    args, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                    env={k: v for k, v in full_env.items() if v is not None})
        deadline = time.monotonic() + timeout
        # Until all have ended, or one has failed (the others may wait for it forever).
        while any(proc.poll() is None for proc in procs.values()) and \
                all(proc.returncode in (None, 0) for proc in procs.values()):
            if time.monotonic() > deadline:
                pytest.fail(f'still running after {timeout} s:\n' + '\n'.join(
                    f'--- {name}:\n{log.read_text()[-3000:]}' for name, log in logs.items()))
            time.sleep(0.5)
    finally:
        for proc in procs.values():
            if proc.returncode is None:  # not reaped: its process group id is still its own
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    return {name: (proc.returncode, logs[name].read_text()) for name, proc in procs.items()}


def probe_report(output: str, rank: int, when: str):
    """The gloo threads rank ``rank`` reported ``when`` ('after training' or 'at exit')."""
    found = re.findall(rf'\[probe\] rank {rank} gloo threads {when}: (\[[^\]]*\])', output)
    assert len(found) == 1, (rank, when, output[-6000:])
    return ast.literal_eval(found[0])


def assert_clean_exit(code: int, output: str, ranks, trained=True):
    assert code == 0, output[-6000:]
    for rank in ranks:
        if trained:  # the probe does see gloo's threads while the group is up
            assert probe_report(output, rank, 'after training'), output[-6000:]
        assert probe_report(output, rank, 'at exit') == [], output[-6000:]


def weights(work_dir, rank: int) -> dict:
    """What tests/dist_probe_hook.py saved: ``state_dict`` and ``parameters`` (names)."""
    return torch.load(osp.join(work_dir, f'weights_rank{rank}.pth'), map_location='cpu')


def assert_same_weights(a: dict, b: dict, parameters_only=False):
    """Bitwise. Across ranks only the parameters: DDP does not sync batch-norm statistics."""
    assert a['state_dict'].keys() == b['state_dict'].keys()
    keys = a['parameters'] if parameters_only else a['state_dict'].keys()
    for key in keys:
        assert torch.equal(a['state_dict'][key], b['state_dict'][key]), key


def test_tear_down_process_group_on_success_only():
    def init():  # a group of this one process
        dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{free_port()}', rank=0,
                                world_size=1)

    init()
    with tear_down_process_group():
        dist.all_reduce(torch.ones(1))
    assert not dist.is_initialized()

    init()
    try:
        with pytest.raises(RuntimeError, match='failed rank'):
            with tear_down_process_group():
                raise RuntimeError('failed rank')
        # Left alone: destroying would wait for collectives in flight, which peers may never
        # complete; the exception ends the process anyway.
        assert dist.is_initialized()
    finally:
        dist.destroy_process_group()


def test_slurm_variables_become_torch_ones(tmp_path):
    names = ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT')
    before = dict(os.environ)
    # Task 3 of 4, the second on the second node of two. patch.dict restores the whole
    # environment, the variables slurm_to_torch_env sets included.
    with mock.patch.dict(os.environ, PATH=FAKE_SLURM + os.pathsep + os.environ['PATH'],
                         FAKE_SLURM_LOG=str(tmp_path / 'calls.log'), SLURM_PROCID='3',
                         SLURM_NTASKS='4', SLURM_LOCALID='1', SLURM_NODELIST='node-a,node-b'):
        for name in names:
            os.environ.pop(name, None)
        slurm_to_torch_env()
        assert {name: os.environ[name] for name in names} == dict(
            RANK='3', WORLD_SIZE='4', LOCAL_RANK='1', MASTER_ADDR='node-a', MASTER_PORT='29500')
        # MMEngine's precedence: the config's port, else MASTER_PORT; a set MASTER_ADDR is kept.
        os.environ['MASTER_ADDR'] = '10.0.0.1'
        slurm_to_torch_env()
        assert os.environ['MASTER_ADDR'] == '10.0.0.1' and os.environ['MASTER_PORT'] == '29500'
        slurm_to_torch_env(port=29600)
        assert os.environ['MASTER_PORT'] == '29600'
    assert (tmp_path / 'calls.log').read_text() == 'scontrol show hostname node-a,node-b\n'
    assert os.environ == before


@pytest.fixture(scope='module')
def one_node_run(tmp_path_factory, teacher_ckpts):
    """tools/dist_train.sh with 2 processes on this node: (work dir, exit code, output)."""
    folder = tmp_path_factory.mktemp('one_node')
    config = probe_config(folder, teacher_ckpts['digits'])
    work = folder / 'work'
    runs = launch([('dist_train', ['bash', 'tools/dist_train.sh', config, '2',
                                   '--work-dir', str(work)],
                   dict(MASTER_ADDR='127.0.0.1', PORT=str(free_port())))],
                  folder)
    return (work, *runs['dist_train'])


def test_dist_train_two_cpu_processes_gloo(one_node_run):
    work, code, out = one_node_run
    assert_clean_exit(code, out, ranks=(0, 1))
    assert 'Distributed launcher: pytorch' in out and 'GPU number: 2' in out
    # 256 images / (64 per process x 2 processes) -> 2 iterations, then validation.
    assert 'Epoch(train) [1][2/2]' in out and 'Epoch(val) [1][1/1]' in out
    assert (work / 'epoch_1.pth').exists()
    assert_same_weights(weights(work, 0), weights(work, 1), parameters_only=True)


def test_two_nodes_of_one_process_train_as_one_node_of_two(one_node_run, tmp_path,
                                                            teacher_ckpts):
    """tools/dist_train.sh launched twice, NNODES=2 and NODE_RANK 0 / 1, one process each."""
    config = probe_config(tmp_path, teacher_ckpts['digits'])
    nodes = dict(NNODES='2', MASTER_ADDR='127.0.0.1', PORT=str(free_port()))
    runs = launch([(f'node{n}', ['bash', 'tools/dist_train.sh', config, '1', '--work-dir',
                                 str(tmp_path / f'node{n}')], dict(nodes, NODE_RANK=str(n)))
                   for n in (0, 1)], tmp_path)
    assert_clean_exit(*runs['node0'], ranks=(0,))
    assert_clean_exit(*runs['node1'], ranks=(1,))
    assert 'GPU number: 2' in runs['node0'][1]  # one world of 2, not two worlds of 1
    assert (tmp_path / 'node0' / 'epoch_1.pth').exists()
    assert not (tmp_path / 'node1' / 'epoch_1.pth').exists()  # rank 1 does not save
    for rank in (0, 1):  # each rank exactly as the same rank of the one-node run
        assert_same_weights(weights(tmp_path / f'node{rank}', rank),
                            weights(one_node_run[0], rank))


def test_mutual_learning_two_cpu_processes_gloo(tmp_path):
    """Online distillation (DML: a trainable peer with its own optimiser) under
    tools/dist_train.sh with 2 processes: clean exit, and both networks' parameters identical
    on both ranks (DDP synchronises the peer's gradients as the student's)."""
    config = tmp_path / 'dml_probe.py'
    config.write_text('\n'.join([
        f'_base_ = {osp.join(REPO, "configs/demo/digits/dml_resnet18-tiny_digits.py")!r}',
        "custom_imports = dict(imports=['mmkd', 'dist_probe_hook'], allow_failed_imports=False)",
        "custom_hooks = [dict(type='DumpRankWeights')]",
        'train_cfg = dict(max_epochs=1)',
        'train_dataloader = dict(dataset=dict(indices=256))',
        'val_dataloader = dict(dataset=dict(indices=64))',
        'test_dataloader = val_dataloader',
        'default_hooks = dict(logger=dict(interval=1))']) + '\n')
    work = tmp_path / 'work'
    code, out = launch([('dml', ['bash', 'tools/dist_train.sh', str(config), '2', '--work-dir',
                                 str(work)], dict(MASTER_ADDR='127.0.0.1',
                                                  PORT=str(free_port())))],
                       tmp_path)['dml']
    assert_clean_exit(code, out, ranks=(0, 1))
    assert 'GPU number: 2' in out and 'Epoch(train) [1][2/2]' in out and 'peer.loss' in out
    a, b = weights(work, 0), weights(work, 1)
    assert any(k.startswith('trainable_teachers.peer.') for k in a['parameters'])
    assert_same_weights(a, b, parameters_only=True)


def test_slurm_train_and_test_scripts(one_node_run, tmp_path, teacher_ckpts):
    """tools/slurm_train.sh then tools/slurm_test.sh, 2 tasks, through the fake srun: a job
    of 2 nodes with 1 task each, the first node's address found with scontrol."""
    config = probe_config(tmp_path, teacher_ckpts['digits'])
    calls = tmp_path / 'slurm_calls.log'
    slurm = dict(PATH=FAKE_SLURM + os.pathsep + os.environ['PATH'], GPUS='2', GPUS_PER_NODE='1',
                 CPUS_PER_TASK='1', SRUN_ARGS='--quiet --exclusive',
                 FAKE_SLURM_NODELIST='localhost,fake-node-2', FAKE_SLURM_LOG=str(calls),
                 MASTER_ADDR=None, MASTER_PORT=str(free_port()))
    work = tmp_path / 'work'
    code, out = launch([('slurm_train', ['bash', 'tools/slurm_train.sh', 'cpu', 'kd-train', config,
                                         str(work)], slurm)], tmp_path)['slurm_train']
    assert_clean_exit(code, out, ranks=(0, 1))
    assert 'Distributed launcher: slurm' in out and 'GPU number: 2' in out
    for rank in (0, 1):
        assert_same_weights(weights(work, rank), weights(one_node_run[0], rank))
    val_acc = re.findall(r'Epoch\(val\) \[1\]\[1/1\] +accuracy/top1: ([0-9.]+)', out)

    # As on a partition without GPUs; test.py's own arguments follow the script's.
    slurm.update(GRES='', SRUN_ARGS=None, MASTER_PORT=str(free_port()))
    code, out = launch([('slurm_test', ['bash', 'tools/slurm_test.sh', 'cpu', 'kd-test', config,
                                        str(work / 'epoch_1.pth'), '--work-dir',
                                        str(tmp_path / 'test')], slurm)], tmp_path)['slurm_test']
    assert_clean_exit(code, out, ranks=(0, 1), trained=False)
    test_acc = re.findall(r'Epoch\(test\) \[1/1\] +accuracy/top1: ([0-9.]+)', out)
    assert len(val_acc) == 1 and test_acc == val_acc  # the same 64 images, the same weights

    assert calls.read_text().splitlines() == [
        'srun --partition=cpu --job-name=kd-train --gres=gpu:1 --ntasks=2 --ntasks-per-node=1 '
        f'--cpus-per-task=1 --kill-on-bad-exit=1 --quiet --exclusive {sys.executable} -u '
        f'tools/train.py {config} --work-dir={work} --launcher=slurm',
        'scontrol show hostname localhost,fake-node-2',
        'scontrol show hostname localhost,fake-node-2',
        'srun --partition=cpu --job-name=kd-test --ntasks=2 --ntasks-per-node=1 '
        f'--cpus-per-task=1 --kill-on-bad-exit=1 {sys.executable} -u tools/test.py '
        f'{config} {work / "epoch_1.pth"} --launcher=slurm --work-dir {tmp_path / "test"}',
        'scontrol show hostname localhost,fake-node-2',
        'scontrol show hostname localhost,fake-node-2']


def test_teacher_cache_sharded_by_two_processes(one_node_run, tmp_path, teacher_ckpts):
    """tools/cache_teacher.py under torchrun writes one shard per rank; a 2-process run from
    that cache ends on every rank with the live 2-process run's weights, bit for bit."""
    import json
    config = probe_config(tmp_path, teacher_ckpts['digits'])
    cache = tmp_path / 'cache'
    runs = launch([('cache', [sys.executable, '-m', 'torch.distributed.run', '--nnodes=1',
                              '--nproc_per_node=2', '--master_addr=127.0.0.1',
                              f'--master_port={free_port()}', 'tools/cache_teacher.py', config,
                              '--out', str(cache), '--launcher', 'pytorch'], {})], tmp_path)
    code, out = runs['cache']
    assert code == 0, out[-6000:]
    meta = json.loads((cache / 'meta.json').read_text())
    assert meta['world_size'] == 2 and meta['samples'] == 256
    assert [s['rows'] for s in meta['teachers']['teacher']['shards']] == [128, 128]
    assert all((cache / 'teacher' / f'r{r}.index.npz').exists() for r in (0, 1))
    work = tmp_path / 'work'
    runs = launch([('train', ['bash', 'tools/dist_train.sh', config, '2', '--work-dir',
                              str(work), '--cfg-options', f'model.teacher.cache={cache}'],
                    dict(MASTER_ADDR='127.0.0.1', PORT=str(free_port())))], tmp_path)
    assert_clean_exit(*runs['train'], ranks=(0, 1))
    for rank in (0, 1):
        assert_same_weights(weights(work, rank), weights(one_node_run[0], rank))
