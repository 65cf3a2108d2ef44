"""Sharded training of a distiller with PyTorch's FSDP2 (``torch.distributed.fsdp.fully_shard``).

Select it in a config, as MMEngine's own wrappers are selected::

    model_wrapper_cfg = dict(type='mmkd.DistillerFSDP', shard_units='whole')

and launch with a distributed launcher (``tools/dist_train.sh``, ``--launcher pytorch``).
``tools/train.py`` then adds its hook (``custom_hooks = [dict(type='mmkd.DistillerFSDPHook')]``;
a script that builds the Runner itself adds that line).

What is sharded and what is replicated (each rank of a world of ``W``):

* **Sharded** (each rank holds ``1/W`` of every parameter, of its gradient and of its optimiser
  state): the student (its inserts included), every trainable teacher (a peer in mutual
  learning), every method with parameters (connectors, projectors) and any other parameter of
  the distiller. A unit's full parameters exist on a rank only while that unit runs its
  forward or backward (``reshard_after_forward=True``), so the parameter memory of the
  sharded parts is ``P_s * bytes / W`` plus the largest unit gathered at once; gradients and
  the optimiser state (SGD momentum: 1x, Adam: 2x the parameters) are ``1/W`` too. Cost: one
  all-gather of each unit in the forward, one in the backward, and one reduce-scatter of its
  gradients per step (DDP's all-reduce is a reduce-scatter plus an all-gather, so the
  traffic is about 1.5x DDP's).
* **Replicated**: the frozen teachers. They are not submodules of the distiller (see
  :mod:`mmkd.distillers.distiller`), so FSDP never sees them: every rank holds each frozen
  teacher's full weights (``P_t * bytes`` per rank, e.g. 0.35 GB for a ViT-B in fp32) and runs
  it on its own batch with no communication at all. Sharding them instead would save
  ``(1 - 1/W) * P_t * bytes`` per rank and cost one all-gather of the teacher's weights every
  step (no gradients, no optimiser state to save): worth it only for a teacher that does not
  fit next to the student; not done here. A teacher's ``precision='bf16'`` (see
  :mod:`mmkd.distillers.teachers`) halves its activations, not its stored weights.
* Buffers (batch-norm statistics) are never sharded: each rank keeps its own, as under
  ``mmkd.DistillerDataParallel`` (``broadcast_buffers=False``); checkpoints hold rank 0's.

Units (``shard_units``, the same for the student and each trainable teacher): ``'whole'``
(default) makes each model one unit, gathered for its whole forward: safe for every model the
distiller calls through its forward, as it calls the student and the teachers. ``'children'``
makes each direct child with parameters (``backbone``, ``neck``, ``head``; the entries of a
``ModuleDict``/``ModuleList``, which have no forward of their own, such as ``kd_inserts``) a
unit of its own, so that only one child is gathered at a time; a list of class names
(``['ResLayer']``) makes every module of those classes a unit. A unit's parameters are
gathered by its forward pre-hook: a unit whose parameters are used outside its own forward
(an mmdet RoI head, whose ``loss`` calls its sub-heads directly; a method reading the
student's weights) fails with a DTensor error; ``'whole'`` avoids that for the models the
distiller calls itself. Methods with parameters are one unit each.

Weights are initialised before sharding (``init_weights``, then rank 0's values broadcast, as
DDP does), so a sharded run starts from the weights an unsharded run with the same seed
starts from. Checkpoints are written through MMEngine's ``Runner`` with **full** (unsharded)
tensors, in exactly the layout a single-process or DDP run writes (``state_dict`` keys,
``optimizer`` state indexed by parameter position): ``tools/test.py``, the export tool and a
non-sharded resume read them as any other checkpoint, and a sharded run resumes from any of
them. This needs :class:`DistillerFSDPHook` in ``custom_hooks``: the Runner saves on rank 0
only (``@master_only``), while gathering full tensors is a collective of every rank; the hook
gathers them on every rank just before the Runner saves, and shards a loaded checkpoint's
tensors the way the model's parameters and optimiser state are sharded.
"""
import contextlib
import inspect
import logging
import re
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Union

import torch
import torch.distributed as torch_dist
import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.optim import OptimWrapper, OptimWrapperDict

from ..registry import HOOKS, MODEL_WRAPPERS
from .distiller import Distiller, distiller_train_step

try:  # FSDP2: torch >= 2.6 (where it left torch.distributed._composable)
    from torch.distributed.checkpoint.state_dict import (StateDictOptions,
                                                         get_model_state_dict)
    from torch.distributed.fsdp import FSDPModule, fully_shard
    from torch.distributed.tensor import DTensor, distribute_tensor
except ImportError:  # pragma: no cover - depends on the torch build
    fully_shard = None

#: The values ``shard_units`` takes besides a list of class names.
SHARD_UNITS = ('whole', 'children')
#: The keys of ``model_wrapper_cfg`` for :class:`DistillerFSDP` (besides ``type``).
WRAPPER_KEYS = ('shard_units', 'reshard_after_forward', 'device_ids')
_HOOK_CFG = "custom_hooks=[dict(type='mmkd.DistillerFSDPHook')]"


def _has_params(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())


def _children_units(model: nn.Module) -> List[nn.Module]:
    """``model``'s direct children with parameters; a ModuleDict/ModuleList (no forward of its
    own, so no pre-hook that would gather it) stands for its entries."""
    units = []
    for child in model.children():
        if isinstance(child, (nn.ModuleDict, nn.ModuleList)):
            units += _children_units(child)
        elif _has_params(child):
            units.append(child)
    return units


def _typed_units(model: nn.Module, names: Sequence[str]) -> List[nn.Module]:
    """Every module of ``model`` (not ``model`` itself) whose class is named in ``names``, with
    parameters, innermost first (a nested unit is sharded before the one around it)."""
    found = [m for m in model.modules() if m is not model and type(m).__name__ in names
             and _has_params(m)]
    return list(reversed(found))


@MODEL_WRAPPERS.register_module()
class DistillerFSDP(nn.Module):
    """Shards a :class:`mmkd.Distiller` over the ranks with FSDP2 (module docstring: what is
    sharded, what is replicated, what each costs).

    Args:
        module (Distiller): the distiller, built and on its device (the Runner passes it).
        shard_units (str | list[str]): how the student and each trainable teacher are split
            into units, each gathered only while it runs: ``'whole'`` (default: one unit per
            model), ``'children'`` (one per direct child with parameters), or a list of
            class names (every module of those classes, e.g. ``['ResLayer']``). Methods with
            parameters are one unit each; the distiller itself is the root unit (what is left).
        reshard_after_forward (bool): free each unit's gathered parameters after its forward
            and gather them again in the backward (default True: the least memory); False
            keeps them from the forward to the backward (one all-gather less per unit and
            step, the memory of the unsharded parts meanwhile).
        device_ids (list, optional): accepted for compatibility with the DDP wrappers'
            configs (``tools/train.py`` sets ``device_ids=None`` on CPU) and ignored: FSDP2
            shards on the device the parameters are on.

    ``tools/train.py`` and MMEngine's Runner call ``train_step``/``val_step``/``test_step``;
    ``train_step`` keeps the distiller's ``nonfinite_loss='skip'`` policy (every rank skips
    the same step, see :func:`mmkd.distillers.distiller.distiller_train_step`).
    """

    def __init__(self,
                 module: nn.Module,
                 shard_units: Union[str, Sequence[str]] = 'whole',
                 reshard_after_forward: bool = True,
                 device_ids: Optional[list] = None,
                 **unknown):
        super().__init__()
        if unknown:
            raise TypeError(f'model_wrapper_cfg for mmkd.DistillerFSDP: unknown key(s) '
                            f'{sorted(unknown)}; valid keys are {list(WRAPPER_KEYS)} '
                            "(and 'type').")
        if fully_shard is None:  # pragma: no cover
            raise RuntimeError(f'mmkd.DistillerFSDP needs FSDP2 (torch.distributed.fsdp.'
                               f'fully_shard, torch >= 2.6); this is torch {torch.__version__}.')
        if not isinstance(module, Distiller):
            raise TypeError(f'mmkd.DistillerFSDP wraps an mmkd Distiller, got '
                            f'{type(module).__name__}; for a plain model use MMEngine\'s '
                            'wrappers (model_wrapper_cfg=None: DDP).')
        if type(module).train_step is not Distiller.train_step:
            raise TypeError(f'mmkd.DistillerFSDP: {type(module).__name__} has a train_step of '
                            'its own (e.g. a data-free distiller\'s generator step), which this '
                            'wrapper does not run; train it with mmkd.DistillerDataParallel.')
        if not isinstance(reshard_after_forward, bool):
            raise TypeError(f'model_wrapper_cfg.reshard_after_forward='
                            f'{reshard_after_forward!r}: valid values are True and False.')
        if not (torch_dist.is_available() and torch_dist.is_initialized()):
            raise RuntimeError('mmkd.DistillerFSDP needs an initialised process group: launch '
                               'with tools/dist_train.sh (or --launcher pytorch/slurm).')
        self.shard_units = self._check_units(shard_units)
        self.reshard_after_forward = reshard_after_forward
        self.module = module
        self.checkpoint_hook_bound = False  # set by DistillerFSDPHook.before_run
        models = {'student': module.student, **dict(module.trainable_teachers.items())}
        plan = self._unit_plan(models)
        # Initialise before sharding (afterwards the Runner cannot: its init broadcasts whole
        # tensors), and start every rank from rank 0's values, as DDP does.
        module.init_weights()
        self._broadcast_from_rank0(module)
        for unit in plan:
            fully_shard(unit, reshard_after_forward=reshard_after_forward)
        fully_shard(module, reshard_after_forward=reshard_after_forward)
        self.units = len(plan) + 1
        # Any later call would initialise shards independently: refused with its reason.
        module.init_weights = self._init_weights_after_sharding
        print_log(f'mmkd.DistillerFSDP: {self.units} FSDP units (shard_units='
                  f'{self.shard_units!r}, the distiller as root) over '
                  f'{torch_dist.get_world_size()} ranks; frozen teachers '
                  f'{[n for n, t in module._teachers.items() if t.kind == "frozen"]} are '
                  'replicated on every rank.', logger='current', level=logging.INFO)

    # ------------------------------------------------------------------ construction
    @staticmethod
    def _check_units(units):
        valid = (f'valid values are {list(SHARD_UNITS)} or a non-empty list of module class '
                 "names (e.g. ['ResLayer'])")
        if isinstance(units, str):
            if units not in SHARD_UNITS:
                raise ValueError(f'model_wrapper_cfg.shard_units={units!r}: {valid}.')
            return units
        if not isinstance(units, (list, tuple)) or not units or not all(
                isinstance(u, str) and u for u in units):
            raise TypeError(f'model_wrapper_cfg.shard_units={units!r}: {valid}.')
        return list(units)

    def _unit_plan(self, models: Dict[str, nn.Module]) -> List[nn.Module]:
        """The modules to shard before the root, innermost first."""
        plan = []
        if isinstance(self.shard_units, list):
            classes = set()
            for model in models.values():
                classes |= {type(m).__name__ for m in model.modules() if _has_params(m)}
            missing = [n for n in self.shard_units if n not in classes]
            if missing:
                raise ValueError(f'model_wrapper_cfg.shard_units: no module with parameters of '
                                 f'class(es) {missing} in {list(models)}; the classes there '
                                 f'are {sorted(classes)}.')
        for model in models.values():
            if self.shard_units == 'children':
                plan += _children_units(model)
            elif isinstance(self.shard_units, list):
                plan += _typed_units(model, self.shard_units)
            if _has_params(model):
                plan.append(model)
        plan += [m for m in self.module.methods.values() if _has_params(m)]
        return plan

    @staticmethod
    def _broadcast_from_rank0(module: nn.Module) -> None:
        with torch.no_grad():
            for tensor in [*module.parameters(), *module.buffers()]:
                torch_dist.broadcast(tensor.data, src=0)

    def _init_weights_after_sharding(self):
        raise RuntimeError(
            'mmkd.DistillerFSDP initialised the weights before sharding them; initialising '
            'sharded weights is not supported (MMEngine\'s Runner would broadcast whole '
            f'tensors and fail). Add {_HOOK_CFG} to the config: it replaces the Runner\'s '
            'initialisation and saves full checkpoints.')

    # ------------------------------------------------------------------ steps
    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def _run_forward(self, data, mode: str):
        if isinstance(data, dict):
            return self(**data, mode=mode)
        if isinstance(data, (list, tuple)):
            return self(*data, mode=mode)
        raise TypeError('Output of `data_preprocessor` should be list, tuple or dict, but got '
                        f'{type(data)}')

    def train_step(self, data, optim_wrapper):
        if not self.checkpoint_hook_bound:
            raise RuntimeError(f'mmkd.DistillerFSDP trains without its hook: add {_HOOK_CFG} '
                               '(checkpoints would otherwise hold rank 0\'s shards only).')
        return distiller_train_step(self, self.module, data, optim_wrapper)

    def val_step(self, data):
        return self.module.val_step(data)

    def test_step(self, data):
        return self.module.test_step(data)

    @contextlib.contextmanager
    def no_sync(self):
        """No gradient reduce-scatter in this context (gradient accumulation: MMEngine's
        ``OptimWrapper.optim_context`` enters it between optimiser steps)."""
        units = [m for m in self.module.modules() if isinstance(m, FSDPModule)]
        for unit in units:
            unit.set_requires_gradient_sync(False, recurse=False)
        try:
            yield
        finally:
            for unit in units:
                unit.set_requires_gradient_sync(True, recurse=False)

    # ------------------------------------------------------------------ full state
    def full_model_state(self) -> dict:
        """The distiller's state dict with full tensors on the CPU, on rank 0 (an empty dict
        elsewhere). A collective: every rank must call it."""
        return get_model_state_dict(
            self.module, options=StateDictOptions(full_state_dict=True, cpu_offload=True))

    @staticmethod
    def _wrappers(optim_wrapper) -> Dict[Optional[str], OptimWrapper]:
        if isinstance(optim_wrapper, OptimWrapperDict):
            return dict(optim_wrapper.items())
        return {None: optim_wrapper}

    def full_optim_state(self, optim_wrapper) -> Dict[Optional[str], dict]:
        """Each optimiser's ``state`` with full tensors on the CPU, keyed by parameter
        position as ``optimizer.state_dict()`` keys it (``{None: ...}`` for one optimiser),
        on rank 0 (empty elsewhere). A collective: every rank must call it."""
        rank0 = torch_dist.get_rank() == 0
        out = {}
        for name, wrapper in self._wrappers(optim_wrapper).items():
            state = wrapper.optimizer.state_dict()['state']
            full = {}
            for index in sorted(state):  # the same order on every rank
                values = {}
                for key, value in state[index].items():
                    if isinstance(value, DTensor):
                        value = value.full_tensor()
                    if rank0:
                        values[key] = value.cpu() if torch.is_tensor(value) else value
                full[index] = values
            out[name] = full if rank0 else {}
        return out

    def shard_model_state(self, state_dict: dict) -> dict:
        """``state_dict`` (full tensors; ``module.`` prefixes removed) with every tensor whose
        parameter is sharded replaced by this rank's shard, for the Runner to load. Keys the
        model lacks and tensors of another shape are left as they are (the Runner reports
        them)."""
        own = self.module.state_dict()
        out = OrderedDict()
        for key, value in state_dict.items():
            target = own.get(key)
            if isinstance(target, DTensor) and torch.is_tensor(value) and \
                    not isinstance(value, DTensor) and value.shape == target.shape:
                value = distribute_tensor(value.to(target.device, target.dtype),
                                          target.device_mesh, target.placements,
                                          src_data_rank=None)
            out[key] = value
        if hasattr(state_dict, '_metadata'):
            out._metadata = state_dict._metadata
        return out

    def shard_optim_state(self, optim_wrapper, saved: dict) -> dict:
        """A saved optimiser state (the format ``optim_wrapper.state_dict()`` has, full
        tensors) with each per-parameter tensor replaced by this rank's shard."""
        wrappers = self._wrappers(optim_wrapper)
        out = dict(saved)
        for name, wrapper in wrappers.items():
            part = dict(saved if name is None else saved[name])
            params = [p for group in wrapper.optimizer.param_groups for p in group['params']]
            state = {}
            for index, values in part.get('state', {}).items():
                param = params[index] if isinstance(index, int) and index < len(params) else None
                values = dict(values)
                if isinstance(param, DTensor):
                    for key, value in values.items():
                        if torch.is_tensor(value) and not isinstance(value, DTensor) and \
                                value.dim() and value.shape == param.shape:
                            values[key] = distribute_tensor(
                                value.to(param.device), param.device_mesh, param.placements,
                                src_data_rank=None)
                state[index] = values
            part['state'] = state
            if name is None:
                out = part
            else:
                out[name] = part
        return out


@HOOKS.register_module()
class DistillerFSDPHook(Hook):
    """What :class:`DistillerFSDP` needs from MMEngine's Runner (a no-op for other wrappers).

    * ``before_run``: the Runner's weight initialisation (the wrapper has done it before
      sharding) is skipped, ``runner.save_checkpoint`` is preceded, on every rank, by the
      gathering of full model and optimiser tensors (collectives; the Runner itself saves on
      rank 0 only), and ``runner.resume`` reads the checkpoint onto the CPU (not a full copy
      on every rank's GPU).
    * ``before_save_checkpoint``: the checkpoint's ``state_dict`` and ``optimizer`` state
      become those full tensors: the layout of an unsharded run's checkpoint.
    * ``after_load_checkpoint`` (last, after the run-record check): the loaded full tensors are
      sharded as the model's parameters and the optimiser's state are, before the Runner
      loads them (``--resume``, ``load_from``).
    """
    priority = 'LOWEST'

    def __init__(self):
        self._full = None

    @staticmethod
    def _wrapper(runner) -> Optional[DistillerFSDP]:
        return runner.model if isinstance(runner.model, DistillerFSDP) else None

    def before_run(self, runner) -> None:
        wrapper = self._wrapper(runner)
        if wrapper is None:
            return
        wrapper.checkpoint_hook_bound = True

        def init_model_weights():
            runner.logger.info('mmkd.DistillerFSDP: weights initialised before sharding; the '
                               "Runner's initialisation is skipped.")
        runner._init_model_weights = init_model_weights
        original = runner.save_checkpoint
        signature = inspect.signature(original)

        def save_checkpoint(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            with_optimizer = bound.arguments.get('save_optimizer', True)
            self._full = dict(
                state_dict=wrapper.full_model_state(),
                optimizer=(wrapper.full_optim_state(runner.optim_wrapper)
                           if with_optimizer else None))
            try:
                return original(*args, **kwargs)
            finally:
                self._full = None
        runner.save_checkpoint = save_checkpoint
        resume = runner.resume

        def resume_on_cpu(filename, resume_optimizer=True, resume_param_scheduler=True,
                          map_location='cpu'):
            # The Runner's default loads the whole checkpoint onto every rank's device; on
            # the CPU, each tensor goes to the device only to be cut into its shard.
            return resume(filename, resume_optimizer, resume_param_scheduler, map_location)
        runner.resume = resume_on_cpu

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if self._wrapper(runner) is None:
            return
        if self._full is None:
            raise RuntimeError('mmkd.DistillerFSDPHook: a checkpoint is being saved without '
                               'the full tensors gathered on every rank (runner.save_checkpoint '
                               'was replaced after before_run?).')
        state = OrderedDict(self._full['state_dict'])
        metadata = getattr(checkpoint.get('state_dict'), '_metadata', None)
        if metadata is not None:
            state._metadata = metadata
        checkpoint['state_dict'] = state
        full_optim = self._full['optimizer']
        if full_optim is not None and 'optimizer' in checkpoint:
            saved = checkpoint['optimizer']
            for name, full in full_optim.items():
                part = saved if name is None else saved[name]
                part['state'] = full

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        wrapper = self._wrapper(runner)
        if wrapper is None:
            return
        if 'state_dict' in checkpoint:
            state = checkpoint['state_dict']
            stripped = OrderedDict((re.sub(r'^module\.', '', k), v) for k, v in state.items())
            if hasattr(state, '_metadata'):
                stripped._metadata = state._metadata
            checkpoint['state_dict'] = wrapper.shard_model_state(stripped)
        if 'optimizer' in checkpoint and isinstance(runner.optim_wrapper, OptimWrapper):
            checkpoint['optimizer'] = wrapper.shard_optim_state(runner.optim_wrapper,
                                                                checkpoint['optimizer'])
