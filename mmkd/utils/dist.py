"""Distributed runs on machines without GPUs (torchrun or srun + gloo), and a clean exit."""
import contextlib
import gc
import os
import subprocess

import torch
import torch.distributed as dist


def setup_cpu_distributed(cfg) -> None:
    """Make a ``--launcher pytorch`` or ``--launcher slurm`` run work on CPU-only processes.

    MMEngine 0.10's ``init_dist`` calls ``torch.cuda.set_device`` and wraps the model with
    ``device_ids=[LOCAL_RANK]``; both fail without CUDA. Here the gloo process group is created
    before the Runner looks (it then skips its own init), and the DDP wrapper gets
    ``device_ids=None`` as CPU modules require. No-op when CUDA is available.
    """
    if torch.cuda.is_available():
        return
    env_cfg = cfg.setdefault('env_cfg', {})
    dist_cfg = env_cfg.setdefault('dist_cfg', {})
    dist_cfg['backend'] = 'gloo'
    launcher = cfg.get('launcher')
    if launcher == 'slurm':
        slurm_to_torch_env(dist_cfg.get('port'))
    if launcher in ('pytorch', 'slurm') and not dist.is_initialized():
        dist.init_process_group(backend='gloo')  # env://, from torchrun's or srun's variables
    wrapper = dict(cfg.get('model_wrapper_cfg') or {})
    wrapper.setdefault('type', 'MMDistributedDataParallel')
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper


def slurm_to_torch_env(port=None) -> None:
    """Set torch.distributed's env:// variables from the ones srun gives each task.

    The same derivation as MMEngine's ``_init_dist_slurm``, without its CUDA call: RANK,
    WORLD_SIZE and LOCAL_RANK from SLURM_PROCID, SLURM_NTASKS and SLURM_LOCALID; MASTER_ADDR,
    unless already set, is the job's first host; MASTER_PORT is ``port`` (the config's
    ``env_cfg.dist_cfg.port``), else the environment's, else 29500 (torch's default).
    """
    os.environ['RANK'] = os.environ['SLURM_PROCID']
    os.environ['WORLD_SIZE'] = os.environ['SLURM_NTASKS']
    os.environ['LOCAL_RANK'] = os.environ['SLURM_LOCALID']
    if port is not None:
        os.environ['MASTER_PORT'] = str(port)
    os.environ.setdefault('MASTER_PORT', '29500')
    if 'MASTER_ADDR' not in os.environ:
        # SLURM_NODELIST is compressed ('node[01-04]'): scontrol expands it, one host a line.
        hosts = subprocess.check_output(
            ['scontrol', 'show', 'hostname', os.environ['SLURM_NODELIST']], text=True)
        os.environ['MASTER_ADDR'] = hosts.split()[0]


@contextlib.contextmanager
def tear_down_process_group():
    """Destroy the default process group when the body succeeds, before Python shuts down.

    Left alive, gloo's worker threads outlive the interpreter: one of them may still drop the
    last reference to a finished collective's tensors (typically the ``broadcast_object_list``
    ending each validation), and freeing a tensor that owns its Python object takes the GIL;
    during interpreter finalization that kills the thread inside a ``noexcept`` destructor, and
    the process aborts (``terminate called without an active exception``, SIGABRT) after a
    successful run. Destroying the group joins those threads while the interpreter is alive.

    On success: a barrier (no rank tears down while another still talks to it), a garbage
    collection (the Runner's reference cycles keep the DDP wrapper, which keeps the group),
    then the destruction. On an exception nothing is done and it propagates: the teardown
    waits for collectives in flight, which a failed rank's peers may never complete.
    """
    yield
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        gc.collect()
        dist.destroy_process_group()
