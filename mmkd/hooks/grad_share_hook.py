"""Gradient shares over training: which loss term drives the student, every N iterations.

    custom_hooks = [dict(type='mmkd.GradientShareHook', interval=50)]

Every ``interval`` training iterations (at iterations ``interval``, ``2 interval``, ...,
counted from 1 as ``LoggerHook`` counts them; when ``LoggerHook`` writes no record at such an
iteration, at the first iteration after it where it does), before the optimiser step of that
iteration, the hook runs the distiller once more on the iteration's own batch and takes,
separately, the gradient of the task term and of each distillation block with respect to the
student's trainable parameters (:mod:`mmkd.analysis.grad_shares`, the measure of
``tools/analysis/grad_shares.py``: ``g_t = dL_t / d theta``; ``norm_t = ||g_t||_2``;
``share_t = norm_t / sum_u norm_u`` over the task and every block;
``cos_task_b = cos(g_b, g_task)``). It logs through the message hub, so
that ``LoggerHook`` writes them to the text log and ``vis_data/scalars.json``:

- ``grad/task/norm``, ``grad/task/share``;
- ``grad/<block>/norm``, ``grad/<block>/share``, ``grad/<block>/cos_task``;
- with ``by_part=True`` (default), ``grad/<term>/norm.<part>`` for each top-level part of the
  student (``backbone``, ``neck``, ``head``).

Each measurement is written once, in the log record of its own iteration, and then removed
from the message hub (``LoggerHook`` would otherwise repeat its last value in every later
record). Only iterations that ``LoggerHook`` writes are measured: in epoch-based runs it
counts its interval within each epoch and, with ``ignore_last=True`` (its default), skips the
epoch's last iterations, so the measured iterations are spaced ``interval`` apart only on
average there; in iteration-based runs with ``interval`` a multiple of the logger's interval
they are exactly ``interval``, ``2 interval``, .... ``tools/analysis/plot_curves.py WORK_DIR
--grad`` plots them.

**Exactness.** The extra forward must not change the training run; it is taken in
``before_train_iter`` with:

- the random-number generators (Python, NumPy, torch CPU, every CUDA device) saved before and
  restored after (:func:`mmkd.hooks.capture_random_state`), so the training forward draws the
  same numbers (dropout, DiffKD's noise, batch augmentations) as without the hook; and so the
  measured gradients are those of the very forward the optimiser step then uses (before any
  division by the gradient-accumulation count);
- every buffer of the distiller and of its teachers (BatchNorm running statistics and
  ``num_batches_tracked``, CRD's memory banks, persistent or not) and every number, string,
  bool and tensor attribute of their modules (counters such as the distiller's non-finite
  skip counts) saved and put back;
- the batch deep-copied first (a data preprocessor or batch augmentation may write into the
  data samples);
- ``torch.autograd.grad`` only: nothing is accumulated into ``.grad``; the optimiser, its
  state and the parameter schedulers are never touched; the models stay in the mode the
  training loop set (train, frozen teachers in eval), so the measurement is of the training
  forward itself.

tests/test_grad_share_hook.py checks that a run with the hook ends with bit-identical
student weights, buffers and optimiser state to the run without it (logit KD with Mixup, DML's
trainable peer with its own optimiser and, marked slow, DiffKD measured at every iteration);
the 10-epoch digits KD demo through ``tools/train.py`` with ``interval=10`` also ends with the
same checkpoint, bit for bit. Checked on CPU; on a GPU the run is as reproducible as CUDA makes
it without the hook (``cudnn.benchmark`` and non-deterministic kernels aside). Not restored:
state a method keeps in other Python objects (lists, dicts, plain objects such as AFD's and
RTK's ``attention_stats``, off unless an analysis tool turns them on): a new method with such
state should be added to that test.

**Cost.** One extra forward of the teachers and the student and one backward per term (task
plus blocks) on each measured iteration, nothing on the others; memory: the forward's graph
plus one student-sized gradient per term, held at once. On the digits KD demo config (batch
64, one CPU thread, two terms: task and ``logits``; medians over a 60-iteration run measuring
every 4th, on a shared, loaded 2-core machine): 0.067-0.122 s for an
ordinary iteration, 0.120-0.280 s for a measured one, 1.6-2.6x over six runs; with
``interval=50`` that adds 1-3 % to training time. Measured by
``OMP_NUM_THREADS=1 python tests/test_grad_share_hook.py --timing``.

Only the student's parameters are measured, also when trainable teachers have optimisers of
their own (``OptimWrapperDict``); a block that teaches a trainable teacher
(``student='peer:...'``) does not reach the student and is left out, as are a trainable
teacher's own losses. Under distributed training each process measures its own batch (the
gradient before DDP averages it) and rank 0's values are logged. Under mixed precision the
forward runs in the optimiser wrapper's autocast context, as training does (the gradients are
of the unscaled loss).
"""
import contextlib
import copy
import logging
from typing import List, Optional

import torch
from mmengine.hooks import Hook, LoggerHook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.optim import OptimWrapperDict

from ..analysis.grad_shares import TASK, gradient_stats, term_gradients
from ..registry import HOOKS
from .random_state import capture_random_state, restore_random_state

#: The prefix of the logged keys (in the message hub: ``train/grad/...``).
PREFIX = 'grad'
_PLAIN = (bool, int, float, str, type(None))


def _unwrap(model):
    return model.module if is_model_wrapper(model) else model


class _ModelState:
    """A snapshot of what a forward may change in ``modules`` (and their submodules): the
    buffers and the plain (number, string, bool, None) and tensor attributes, both as objects
    (a forward may rebind them or add new ones, which are removed) and as values (a forward
    may write into them). Parameters are not copied (a forward does not write them; the
    exactness test checks it)."""

    def __init__(self, modules):
        seen, self.modules = set(), []
        for root in modules:
            for module in root.modules():
                if id(module) in seen:
                    continue
                seen.add(id(module))
                buffers = {k: (b, None if b is None else b.detach().clone())
                           for k, b in module._buffers.items()}
                attrs = {}
                for key, value in vars(module).items():
                    if isinstance(value, _PLAIN):
                        attrs[key] = (value, None)
                    elif _is_attr_tensor(value):
                        attrs[key] = (value, value.detach().clone())
                self.modules.append((module, buffers, attrs))

    def restore(self):
        for module, buffers, attrs in self.modules:
            for key in [k for k in module._buffers if k not in buffers]:
                del module._buffers[key]
            for key, (ref, _) in buffers.items():
                module._buffers[key] = ref
            for key in [k for k, v in vars(module).items()
                        if k not in attrs and (isinstance(v, _PLAIN) or _is_attr_tensor(v))]:
                delattr(module, key)
            for key, (ref, _) in attrs.items():
                setattr(module, key, ref)
            with torch.no_grad():
                for ref, values in [*buffers.values(), *attrs.values()]:
                    if values is not None and not torch.equal(ref.detach(), values):
                        ref.copy_(values)


def _is_attr_tensor(value) -> bool:
    return isinstance(value, torch.Tensor) and not isinstance(value, torch.nn.Parameter)


@HOOKS.register_module()
class GradientShareHook(Hook):
    """Log each loss term's gradient norm on the student, its share of the summed norms and
    its cosine with the task's gradient, every ``interval`` iterations (module docstring).

    Args:
        interval (int): measure at every ``interval``-th training iteration (>= 1). Each
            measurement costs about one extra training iteration (a forward and one backward
            per term, module docstring), so the default 50 adds 1-3 % to training time;
            make it a multiple of the logger's interval (default 10 in OpenMMLab runtimes).
        by_part (bool): also log each top-level part's norm (``grad/<term>/norm.<part>``).
            Default True: the parts (backbone, neck, head) are few, and where a block's
            gradient lands is half of the question.
    """

    # Last in before_train_iter (the state measured is the state training then uses) and
    # after LoggerHook ('BELOW_NORMAL') in after_train_iter (its record is written first).
    priority = 'LOWEST'

    def __init__(self, interval: int = 50, by_part: bool = True):
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
            raise ValueError(f'GradientShareHook: interval must be an integer >= 1 (measure '
                             f'every `interval` training iterations), got {interval!r}.')
        if not isinstance(by_part, bool):
            raise TypeError(f'GradientShareHook: by_part must be True or False, got '
                            f'{by_part!r}.')
        self.interval = interval
        self.by_part = by_part
        self._pending: List[str] = []   # keys in the message hub not yet written by LoggerHook
        self._next = interval             # the next iteration (from 1) due for a measurement
        self.last: Optional[dict] = None  # the last measurement's {key: value}

    # ------------------------------------------------------------------ checks
    def before_train(self, runner):
        from ..distillers import Distiller
        model = _unwrap(runner.model)
        if not isinstance(model, Distiller):
            cfg = getattr(runner, 'cfg', None) or {}
            model_type = (cfg.get('model') or {}).get('type')
            raise TypeError(
                f'GradientShareHook measures the gradients of a distiller\'s loss terms on its '
                f'student; this run\'s model is {type(model).__name__} (model.type='
                f'{model_type!r}), not an '
                'mmkd.Distiller. Remove the hook from custom_hooks, or train a distillation '
                'config.')
        if TASK in model.blocks:
            raise ValueError(f'GradientShareHook: a distillation block is named {TASK!r}, '
                             f'which is the name its logged keys give the task term '
                             f'(grad/{TASK}/...); rename the block.')
        loggers = [h for h in runner.hooks if isinstance(h, LoggerHook)]
        if not loggers:
            print_log('GradientShareHook: the run has no LoggerHook; the gradient shares stay '
                      'in the message hub and are not written anywhere.', logger='current',
                      level=logging.WARNING)
        elif self.interval % loggers[0].interval:
            print_log(f'GradientShareHook: interval={self.interval} is not a multiple of the '
                      f'LoggerHook interval ({loggers[0].interval}): the gradients are '
                      'measured at the first logged iteration after each multiple of '
                      f'{self.interval}.', logger='current', level=logging.WARNING)
        self._next = (runner.iter // self.interval + 1) * self.interval  # also on resume

    # ------------------------------------------------------------------ measuring
    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        if not self.due(runner, batch_idx) or data_batch is None:
            return
        self._next = ((runner.iter + 1) // self.interval + 1) * self.interval
        values = self.measure(runner, data_batch)
        for key, value in values.items():
            runner.message_hub.update_scalar(f'train/{key}', value)
            if key not in self._pending:
                self._pending.append(key)
        self.last = values

    def due(self, runner, batch_idx: int) -> bool:
        """Whether this iteration is measured: ``interval`` iterations have passed since the
        last multiple of ``interval`` measured, and LoggerHook writes a record now (without a
        LoggerHook: every ``interval``-th iteration)."""
        if runner.iter + 1 < self._next:
            return False
        logged = self._logged(runner, batch_idx)
        return (runner.iter + 1) % self.interval == 0 if logged is None else logged

    def measure(self, runner, data_batch) -> dict:
        """The logged ``{key: value}`` for ``data_batch``, every state a forward changes put
        back as it was (module docstring)."""
        distiller = _unwrap(runner.model)
        state = _ModelState([distiller, *distiller.teachers.values()])
        rng = capture_random_state()
        try:
            data = distiller.data_preprocessor(copy.deepcopy(data_batch), True)
            with self._optim_context(runner, distiller):
                losses = distiller(**data, mode='loss')
            taught = [n for n, b in distiller.blocks.items() if b.learner is not None]
            losses = {k: v for k, v in losses.items()
                      if not (k.startswith('distill.') and k.split('.')[1] in taught)}
            named = [(n, p) for n, p in distiller.student.named_parameters() if p.requires_grad]
            names = [n for n, _ in named]
            grads = term_gradients(losses, [p for _, p in named])
            del losses, data
            stats = gradient_stats(grads, names, self.by_part)
        finally:
            restore_random_state(rng)
            state.restore()
        return self.keys(stats)

    @staticmethod
    def keys(stats: dict) -> dict:
        """:func:`mmkd.analysis.grad_shares.gradient_stats` output -> the logged keys."""
        values = {}
        for term, s in stats.items():
            name = TASK if term == TASK else term.split('.', 1)[1]
            values[f'{PREFIX}/{name}/norm'] = s['norm']['all']
            values[f'{PREFIX}/{name}/share'] = s['share']
            if s['cos_task'] is not None:
                values[f'{PREFIX}/{name}/cos_task'] = s['cos_task']
            for part, norm in s['norm'].items():
                if part != 'all':
                    values[f'{PREFIX}/{name}/norm.{part}'] = norm
        return values

    @staticmethod
    @contextlib.contextmanager
    def _optim_context(runner, model):
        """The optimiser wrappers' contexts (autocast under ``AmpOptimWrapper``), as training
        enters them; the distiller is unwrapped, so no DDP ``no_sync`` is involved."""
        wrapper = getattr(runner, 'optim_wrapper', None)
        wrappers = (list(wrapper.values()) if isinstance(wrapper, OptimWrapperDict)
                    else [wrapper] if wrapper is not None else [])
        with contextlib.ExitStack() as stack:
            for w in wrappers:
                if hasattr(w, 'optim_context'):
                    stack.enter_context(w.optim_context(model))
            yield

    # ------------------------------------------------------------------ written once
    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None):
        """Once LoggerHook has written a record holding the measurement, drop it from the
        message hub (its ``current()`` would repeat it in every later record)."""
        if not self._pending or not self._logged(runner, batch_idx):
            return
        scalars = runner.message_hub.log_scalars
        for key in self._pending:
            scalars.pop(f'train/{key}', None)
        self._pending = []

    @staticmethod
    def _logged(runner, batch_idx: int) -> Optional[bool]:
        """Whether LoggerHook writes a training record in this iteration (its condition,
        known before the iteration runs); None without a LoggerHook."""
        for hook in runner.hooks:
            if isinstance(hook, LoggerHook):
                return bool(hook.every_n_inner_iters(batch_idx, hook.interval) or (
                    hook.end_of_epoch(runner.train_dataloader, batch_idx)
                    and (not hook.ignore_last or len(runner.train_dataloader) <= hook.interval)))
        return None
