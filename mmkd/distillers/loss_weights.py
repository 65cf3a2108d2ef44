"""Loss-weight schedules: a block's ``loss_weight`` that changes during training.

    loss_weight=8.0                                              # constant
    loss_weight=dict(type='LinearWarmup', value=1.0, warmup=20, by_epoch=True)   # DKD
    loss_weight=dict(type='Step', value=1.0, milestones=[5000], gamma=0.0)  # teacher off
    loss_weight=dict(type='CosineDecay', value=1.0, min_value=0.0)          # over the run

Schedules are driven by the Runner's counters (MMEngine's ``RuntimeInfoHook`` puts them in the
message hub). ``t`` is the 1-based number of the current iteration (or epoch, with
``by_epoch=True``): ``t = 1`` during the first one. The weight in use is logged every iteration
as ``distill.<block>.weight``.
"""
import math
import numbers
from typing import Optional, Sequence

from mmengine.logging import MessageHub


def _is_number(value, positive=False) -> bool:
    """A finite real (not a bool), positive if asked."""
    return (not isinstance(value, bool) and isinstance(value, numbers.Real)
            and math.isfinite(value) and (not positive or value > 0))


def _number(value, what: str, block: str, positive=False) -> float:
    if not _is_number(value, positive):
        raise TypeError(f'Block {block!r}: loss_weight {what} must be a finite '
                        f'{"positive " if positive else ""}number, got {value!r}.')
    return float(value)


class LossWeight:
    """A constant weight; the base of the schedules."""
    scheduled = False

    def __init__(self, value: float = 1.0, by_epoch: bool = False, block: str = ''):
        self.value = _number(value, 'value', block)
        self.by_epoch = bool(by_epoch)
        self.block = block

    def at(self, t: int, total: Optional[int] = None) -> float:
        return self.value

    def current(self) -> float:
        """The weight for the Runner's current iteration/epoch (t = 1 outside a Runner)."""
        if not self.scheduled:
            return self.value
        hub = MessageHub.get_current_instance()
        key = 'epoch' if self.by_epoch else 'iter'
        count = hub.get_info(key)
        total = hub.get_info('max_epochs' if self.by_epoch else 'max_iters')
        return self.at(1 if count is None else int(count) + 1, total)

    def __repr__(self):
        args = ', '.join(f'{k}={v!r}' for k, v in vars(self).items() if k not in ('block',))
        return f'{type(self).__name__}({args})'


class Constant(LossWeight):
    """``value`` throughout."""


class LinearWarmup(LossWeight):
    """``value * min(t / warmup, 1)``, from ``start`` (default 0) instead of 0 if given:
    ``value * (start + (1 - start) * min(t / warmup, 1))``.

    DKD (Zhao et al., 2022; mdistiller) warms its whole loss up as ``min(epoch / 20, 1)`` with
    1-based epochs: ``dict(type='LinearWarmup', value=1.0, warmup=20, by_epoch=True)``.
    """
    scheduled = True

    def __init__(self, value=1.0, warmup=1, start=0.0, by_epoch=False, block=''):
        super().__init__(value, by_epoch, block)
        self.warmup = _number(warmup, 'warmup', block, positive=True)
        self.start = _number(start, 'start', block)

    def at(self, t, total=None):
        return self.value * (self.start + (1 - self.start) * min(t / self.warmup, 1.0))


class Step(LossWeight):
    """``value * gamma ** (number of milestones m with t > m)``: the weight changes after
    iteration (epoch) ``m``, as MMEngine's ``MultiStepLR``. ``gamma=0`` turns the block off
    after the first milestone (e.g. a teacher that only guides the start of training)."""
    scheduled = True

    def __init__(self, value=1.0, milestones: Sequence[int] = (), gamma=0.1, by_epoch=False,
                 block=''):
        super().__init__(value, by_epoch, block)
        if not isinstance(milestones, (list, tuple)) or not all(
                isinstance(m, int) and not isinstance(m, bool) and m >= 0 for m in milestones):
            raise TypeError(f'Block {block!r}: loss_weight milestones must be a list of '
                            f'non-negative integers, got {milestones!r}.')
        self.milestones = sorted(milestones)
        self.gamma = _number(gamma, 'gamma', block)

    def at(self, t, total=None):
        return self.value * self.gamma ** sum(t > m for m in self.milestones)


class CosineDecay(LossWeight):
    """Half a cosine from ``value`` (t = 1) to ``min_value`` (after ``length`` iterations or
    epochs; default: the run's ``max_iters``/``max_epochs``), then ``min_value``."""
    scheduled = True

    def __init__(self, value=1.0, min_value=0.0, length=None, by_epoch=False, block=''):
        super().__init__(value, by_epoch, block)
        self.min_value = _number(min_value, 'min_value', block)
        self.length = None if length is None else _number(length, 'length', block,
                                                          positive=True)

    def at(self, t, total=None):
        length = self.length or total
        if not length:
            raise RuntimeError(f'Block {self.block!r}: CosineDecay needs `length` or a Runner '
                               'that knows its max_iters/max_epochs.')
        progress = min(max(t - 1, 0) / length, 1.0)
        return self.min_value + (self.value - self.min_value) * (1 + math.cos(
            math.pi * progress)) / 2


SCHEDULES = {cls.__name__: cls for cls in (Constant, LinearWarmup, Step, CosineDecay)}


def build_loss_weight(spec, block: str) -> LossWeight:
    """A block's ``loss_weight``: a number, or ``dict(type=<schedule>, ...)``."""
    if isinstance(spec, dict):
        spec = dict(spec)
        kind = spec.pop('type', None)
        if kind not in SCHEDULES:
            raise KeyError(f'Block {block!r}: unknown loss_weight schedule {kind!r}; valid '
                           f'types are {sorted(SCHEDULES)} (or a plain number).')
        try:
            return SCHEDULES[kind](**spec, block=block)
        except TypeError as e:
            if str(e).startswith('Block'):
                raise
            raise TypeError(f'Block {block!r}: loss_weight {kind}: {e}') from e
    if not _is_number(spec):
        raise TypeError(f'Block {block!r}: loss_weight must be a finite number or '
                        f'dict(type=<schedule>, ...) with type in {sorted(SCHEDULES)}, got '
                        f'{spec!r} ({type(spec).__name__}).')
    return Constant(spec, block=block)
