"""Distributed launch on machines without GPUs (torchrun + gloo)."""
import torch
import torch.distributed as dist


def setup_cpu_distributed(cfg) -> None:
    """Make a ``--launcher pytorch`` run work on CPU-only processes.

    MMEngine 0.10's ``init_dist`` calls ``torch.cuda.set_device`` and wraps the model with
    ``device_ids=[LOCAL_RANK]``; both fail without CUDA. Here the gloo process group is created
    from torchrun's environment before the Runner looks (it then skips its own init), and the
    DDP wrapper gets ``device_ids=None`` as CPU modules require. No-op when CUDA is available.
    """
    if torch.cuda.is_available():
        return
    env_cfg = cfg.setdefault('env_cfg', {})
    env_cfg.setdefault('dist_cfg', {})['backend'] = 'gloo'
    if cfg.get('launcher') == 'pytorch' and not dist.is_initialized():
        dist.init_process_group(backend='gloo')
    wrapper = dict(cfg.get('model_wrapper_cfg') or {})
    wrapper.setdefault('type', 'MMDistributedDataParallel')
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper
