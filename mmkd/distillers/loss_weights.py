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
from typing import Annotated, Optional, Sequence, Tuple

from mmengine.logging import MessageHub

from ..utils.arguments import (Interval, NonNegativeInt, PositiveFloat, check_arguments,
                               check_value)

#: The block key that allows a negative loss weight (a negative value, start, min_value or
#: gamma): a term that pushes the student *away* from the teacher is almost always a typo.
NEGATIVE_OPT_IN = 'allow_negative_loss_weight'
#: A weight, or what multiplies one: >= 0 unless the block sets ``NEGATIVE_OPT_IN=True``.
Weight = Annotated[float, Interval(
    ge=0, opt_in=NEGATIVE_OPT_IN,
    hint='a negative weight pushes the student away from the teacher; if that is meant, set '
         f'{NEGATIVE_OPT_IN}=True in the block')]


class LossWeight:
    """A constant weight; the base of the schedules. Arguments are checked against their
    annotations by :func:`build_loss_weight` (:mod:`mmkd.utils.arguments`), which also sets
    ``block``, the name used in messages.

    Args:
        value (float): the weight (for a schedule: its full value, which the schedule scales).
            >= 0 unless the block sets ``allow_negative_loss_weight=True``. Default 1.0.
        by_epoch (bool): count ``t`` in epochs instead of iterations. Default False.
    """
    scheduled = False
    block = ''

    def __init__(self, value: Weight = 1.0, by_epoch: bool = False):
        self.value = float(value)
        self.by_epoch = by_epoch

    def at(self, t: int, total: Optional[int] = None) -> float:
        return self.value

    def current(self) -> float:
        """The weight for the Runner's current iteration/epoch (t = 1 outside a Runner)."""
        if not self.scheduled:
            return self.value
        return self.at(*current_step(self.by_epoch))

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

    Args:
        warmup (float): iterations (epochs) until the full ``value``. Default 1.
        start (float): the fraction of ``value`` the warm-up starts from (at t = 0). Default 0.
    """
    scheduled = True

    def __init__(self, value: Weight = 1.0, warmup: PositiveFloat = 1, start: Weight = 0.0,
                 by_epoch: bool = False):
        super().__init__(value, by_epoch)
        self.warmup = float(warmup)
        self.start = float(start)

    def at(self, t, total=None):
        return self.value * (self.start + (1 - self.start) * min(t / self.warmup, 1.0))


class Step(LossWeight):
    """``value * gamma ** (number of milestones m with t > m)``: the weight changes after
    iteration (epoch) ``m``, as MMEngine's ``MultiStepLR``. ``gamma=0`` turns the block off
    after the first milestone (e.g. a teacher that only guides the start of training).

    Args:
        milestones (sequence of int): the iterations (epochs) after which the weight is
            multiplied by ``gamma``. Default () (constant).
        gamma (float): the factor at each milestone. Default 0.1.
    """
    scheduled = True

    def __init__(self, value: Weight = 1.0, milestones: Sequence[NonNegativeInt] = (),
                 gamma: Weight = 0.1, by_epoch: bool = False):
        super().__init__(value, by_epoch)
        self.milestones = sorted(milestones)
        self.gamma = float(gamma)

    def at(self, t, total=None):
        return self.value * self.gamma ** sum(t > m for m in self.milestones)


class CosineDecay(LossWeight):
    """Half a cosine from ``value`` (t = 1) to ``min_value`` (after ``length`` iterations or
    epochs; default: the run's ``max_iters``/``max_epochs``), then ``min_value``.

    Args:
        min_value (float): the weight at the end of the decay. Default 0.
        length (float, optional): iterations (epochs) of the decay. Default None: the run's
            ``max_iters`` (``max_epochs``).
    """
    scheduled = True

    def __init__(self, value: Weight = 1.0, min_value: Weight = 0.0,
                 length: Optional[PositiveFloat] = None, by_epoch: bool = False):
        super().__init__(value, by_epoch)
        self.min_value = float(min_value)
        self.length = None if length is None else float(length)

    def at(self, t, total=None):
        length = self.length or total
        if not length:
            raise RuntimeError(f'Block {self.block!r}: CosineDecay needs `length` or a Runner '
                               'that knows its max_iters/max_epochs.')
        progress = min(max(t - 1, 0) / length, 1.0)
        return self.min_value + (self.value - self.min_value) * (1 + math.cos(
            math.pi * progress)) / 2


SCHEDULES = {cls.__name__: cls for cls in (Constant, LinearWarmup, Step, CosineDecay)}


def current_step(by_epoch: bool) -> Tuple[int, Optional[int]]:
    """The Runner's current epoch or iteration, counted from 1 (1 outside a Runner), and the
    run's total (None when unknown), from MMEngine's message hub."""
    hub = MessageHub.get_current_instance()
    count = hub.get_info('epoch' if by_epoch else 'iter')
    total = hub.get_info('max_epochs' if by_epoch else 'max_iters')
    return 1 if count is None else int(count) + 1, total


def build_loss_weight(spec, block: str, allow_negative: bool = False) -> LossWeight:
    """A block's ``loss_weight``: a number, or ``dict(type=<schedule>, ...)``, checked against
    the schedule's argument annotations: finite numbers, and no negative weight unless the
    block opts in (``allow_negative``, the block's ``allow_negative_loss_weight``)."""
    check_value(allow_negative, bool, f'Block {block!r}: {NEGATIVE_OPT_IN}')
    opt_ins = {NEGATIVE_OPT_IN} if allow_negative else set()
    if isinstance(spec, dict):
        spec = dict(spec)
        kind = spec.pop('type', None)
        if kind not in SCHEDULES:
            raise KeyError(f'Block {block!r}: unknown loss_weight schedule {kind!r}; valid '
                           f'types are {sorted(SCHEDULES)} (or a plain number).')
        check_arguments(SCHEDULES[kind], spec, f'Block {block!r}: loss_weight {kind}', opt_ins)
        weight = SCHEDULES[kind](**spec)
    else:
        if isinstance(spec, bool) or not isinstance(spec, numbers.Real) or \
                not math.isfinite(spec):
            raise TypeError(f'Block {block!r}: loss_weight must be a finite number or '
                            f'dict(type=<schedule>, ...) with type in {sorted(SCHEDULES)}, got '
                            f'{spec!r} ({type(spec).__name__}).')
        check_value(spec, Weight, f'Block {block!r}: loss_weight', opt_ins)
        weight = Constant(spec)
    weight.block = block
    return weight
