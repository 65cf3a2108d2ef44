"""Load a distillation config and a checkpoint for an analysis tool, and feed it batches.

    with analysis_runner(CONFIG, checkpoint=RUN/epoch_10.pth, cfg_options=...) as runner:
        model = runner.model                       # a Distiller, student weights loaded
        for data in analysis_batches(runner.val_dataloader, model, num_samples=256):
            ...                                    # data: preprocessed {'inputs', 'data_samples'}

Nothing is written: the runner's work dir is a temporary folder removed on exit.
"""
import contextlib
import os.path as osp
import sys
import tempfile
import uuid
from typing import Iterator, Optional

import torch


def load_student_checkpoint(model, path: str) -> dict:
    """Load ``path`` into the distiller ``model``: a distiller's training checkpoint (its
    ``student.*`` keys and the methods' modules, every one of them required) or a plain
    student's checkpoint (loaded strictly into ``model.student``). Loaded safely
    (:func:`mmkd.utils.checkpoint.safe_torch_load`). Returns the checkpoint's ``meta`` (empty
    when it has none)."""
    from ..utils.checkpoint import safe_torch_load
    checkpoint = safe_torch_load(path)
    meta = checkpoint.get('meta') or {}
    state = checkpoint.get('state_dict', checkpoint)
    if any(k.startswith('student.') for k in state):
        missing, _ = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if k.startswith(('student.', 'methods.'))]
        if missing:
            raise KeyError(f'{path} lacks {missing[:5]} ({len(missing)} keys): not a '
                           'checkpoint of this config.')
    else:
        model.student.load_state_dict(state, strict=True)
    return meta if isinstance(meta, dict) else {}


def set_training_step(runner, meta: dict) -> None:
    """Put the runner's message hub at the last training step of a checkpoint (``meta``:
    its ``epoch`` and ``iter``, the counts completed), with the run's planned totals, so that
    loss-weight schedules (a warm-up, a decay) give the weight that step trained with, not
    their first value."""
    hub = runner.message_hub
    for key in ('epoch', 'iter'):
        if isinstance(meta.get(key), int) and meta[key] >= 1:
            hub.update_info(key, meta[key] - 1)
    train_cfg = runner.cfg.get('train_cfg') or {}
    for key in ('max_epochs', 'max_iters'):
        if isinstance(train_cfg.get(key), int):
            hub.update_info(key, train_cfg[key])


@contextlib.contextmanager
def analysis_runner(config: str, checkpoint: Optional[str] = None, cfg_options=None,
                    seed: int = 0, need_distiller: bool = True, what: str = 'this tool'):
    """An MMEngine runner built from ``config`` as ``tools/train.py`` builds it (teachers
    loaded from their checkpoints), with ``checkpoint`` loaded (see
    :func:`load_student_checkpoint`) and the message hub at its last training step
    (:func:`set_training_step`: scheduled loss weights as they were then), or, without one,
    the student initialised as training starts. Exits with a message naming the config when
    ``need_distiller`` and the model is not a distiller."""
    from mmengine.runner import Runner

    from ..utils.tool_config import is_distiller_config, load_tool_config
    with tempfile.TemporaryDirectory() as work_dir:
        cfg = load_tool_config(config, 'none', cfg_options, work_dir)
        if need_distiller and not is_distiller_config(cfg.model):
            sys.exit(f'{config}: not a distiller config (model type '
                     f'{cfg.model.get("type")!r}); {what} needs a distiller.')
        cfg.randomness = dict(seed=seed, deterministic=False)
        cfg.visualizer = None
        # Unique: MMEngine hands a runner the Visualizer of an earlier one with the same
        # experiment name (config stem + timestamp to the second), whose work dir is gone.
        if not cfg.get('experiment_name'):
            cfg.experiment_name = \
                f'{osp.splitext(osp.basename(config))[0]}_{uuid.uuid4().hex[:8]}'
        runner = Runner.from_cfg(cfg)
        if checkpoint:
            set_training_step(runner, load_student_checkpoint(runner.model, checkpoint))
        else:
            runner.model.init_weights()  # as training starts (teachers keep their weights)
        yield runner


def analysis_batches(loader, model, num_samples: Optional[int] = None,
                     training: bool = False) -> Iterator[dict]:
    """Batches of ``loader`` through ``model.data_preprocessor`` (``training`` as in
    training, e.g. with batch augmentations), until ``num_samples`` samples (all without it;
    the last batch is cut to fit)."""
    seen = 0
    for data in loader:
        if num_samples is not None and seen >= num_samples:
            return
        with torch.no_grad():
            data = model.data_preprocessor(data, training)
        n = len(data['data_samples']) if data.get('data_samples') is not None else \
            len(data['inputs'])
        if num_samples is not None and seen + n > num_samples:
            keep = num_samples - seen
            data = dict(inputs=data['inputs'][:keep],
                        data_samples=None if data.get('data_samples') is None
                        else data['data_samples'][:keep])
            n = keep
        seen += n
        yield data
