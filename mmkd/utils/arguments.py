"""Declared types and ranges of method and loss-weight-schedule arguments, checked at build.

A method's (or schedule's) ``__init__`` annotations are its argument schema::

    def __init__(self, tau: PositiveFloat = 1.0, inference_steps: PositiveInt = 5,
                 selection: Literal['topk', 'threshold', 'all'] = 'topk',
                 ratio: Optional[Annotated[float, Interval(ge=0, lt=1)]] = None, **kwargs)

:func:`check_arguments` reads the annotations of every ``__init__`` a call reaches (following
``**kwargs`` up the MRO, as the call itself does) and checks each *given* value, so a config
fails when it is built, naming the argument, what it must be and what it got, instead of
building and failing later (``LogitKD(tau=0)`` gives a NaN loss in the first step,
``tau='abc'`` a bare "unsupported operand" error) or being read wrongly
(``by_epoch='no'`` is true). One mechanism for every method: a method declares, it does not
check. Rules:

* ``bool`` is True or False: not 0/1, not ``'no'``. ``int`` is an integer, not a bool and not
  ``5.0``. ``float`` is any int or float that is finite (not a bool, not a string, not NaN or
  inf: no argument has a use for those).
* ``Literal[...]``: one of the values, of the same type (``True`` is not ``1``).
* ``Optional``/``Union``: any alternative; ``Sequence[X]``, ``Tuple[X, Y]``, ``Dict[K, V]``:
  a list or tuple (a tuple or list of that length; a dict) whose items are checked.
* ``Annotated[X, Interval(...)]``: a range; ``Contains('loss')``: a substring;
  ``Described(text)`` words the requirement. :data:`PositiveFloat`,
  :data:`NonNegativeFloat`, :data:`PositiveInt`, :data:`NonNegativeInt`, :data:`LossName`
  are the usual ones.
* ``PerSide[X]``: X for both the student and the teacher, or ``dict(student=X, teacher=X)``.

A wrong type (a non-finite number included) raises ``TypeError``, a value out of range or not
among the choices ``ValueError``; the message is ``<owner> argument <name> must be
<requirement>, got <value>`` (``Block 'kd': LogitKD argument tau must be positive (a finite
number > 0), got 0.``). A range
may be lifted by a named opt-in (``Interval(ge=0, opt_in='allow_negative_loss_weight', ...)``):
the caller passes the opt-ins the config gave, and the message names the one that would lift
it. An argument without an annotation is not checked (a user's own registered method works
without one); ``tests/test_failure_catalogue.py`` requires one on every mmkd method and
schedule.
"""
import functools
import inspect
import math
import numbers
import os
import reprlib
import typing
from collections.abc import Mapping as MappingABC
from collections.abc import Sequence as SequenceABC
from typing import (Annotated, Any, Collection, Dict, Literal, NamedTuple, Optional, Sequence,
                    Tuple, Union)

import torch.nn as nn

__all__ = ['Constraint', 'Interval', 'Contains', 'Described', 'PerSide', 'PositiveFloat',
           'NonNegativeFloat', 'PositiveInt', 'NonNegativeInt', 'LossName', 'InitCfg',
           'PathLike', 'SIDES', 'argument_schema', 'bind_arguments', 'check_arguments',
           'check_value', 'describe']

SIDES = ('student', 'teacher')
_NONE = type(None)


class Constraint:
    """A condition on a value of the right type, in ``Annotated[type, constraint]``.

    ``why`` is added to the message (what breaks outside it); ``opt_in`` names the config
    switch that lifts it, ``hint`` says where to set it.
    """
    text = ''

    def __init__(self, why: str = '', opt_in: Optional[str] = None, hint: str = ''):
        self.why, self.opt_in, self.hint = why, opt_in, hint

    def holds(self, value) -> bool:
        raise NotImplementedError


class Interval(Constraint):
    """A numeric range: ``Interval(gt=0)``, ``Interval(ge=0, lt=1)``."""

    def __init__(self, ge=None, gt=None, le=None, lt=None, **kwargs):
        super().__init__(**kwargs)
        self.ge, self.gt, self.le, self.lt = ge, gt, le, lt

    def holds(self, value) -> bool:
        return ((self.ge is None or value >= self.ge) and (self.gt is None or value > self.gt)
                and (self.le is None or value <= self.le)
                and (self.lt is None or value < self.lt))

    @property
    def text(self) -> str:
        low = (f'[{self.ge}' if self.ge is not None else
               f'({self.gt}' if self.gt is not None else None)
        high = (f'{self.le}]' if self.le is not None else
                f'{self.lt})' if self.lt is not None else None)
        if low and high:
            return f'in {low}, {high}'
        if low:
            return f'{">=" if self.ge is not None else ">"} {low[1:]}'
        return f'{"<=" if self.le is not None else "<"} {high[:-1]}' if high else ''


class Contains(Constraint):
    """A string that contains ``part``."""

    def __init__(self, part: str, **kwargs):
        super().__init__(**kwargs)
        self.part = part
        self.text = f'containing {part!r}'

    def holds(self, value) -> bool:
        return self.part in value


class Described:
    """The requirement in words, for an annotation whose generated wording reads badly."""

    def __init__(self, text: str):
        self.text = text


class _PerSideOf:
    """Marker of :class:`PerSide`."""

    def __init__(self, item):
        self.item = item


class PerSide:
    """``PerSide[X]``: X for the student and the teacher alike, or a dict with keys in
    ``('student', 'teacher')`` and X values (a missing side takes the method's default;
    DiffKD's ``skip_tokens``, ``token_shape``)."""

    def __class_getitem__(cls, item):
        return Annotated[Union[item, Dict[str, item]], _PerSideOf(item)]


PositiveFloat = Annotated[float, Interval(gt=0), Described('positive (a finite number > 0)')]
NonNegativeFloat = Annotated[float, Interval(ge=0)]
PositiveInt = Annotated[int, Interval(ge=1)]
NonNegativeInt = Annotated[int, Interval(ge=0)]
#: The key of a returned loss: the distiller optimises (and weights) only keys with 'loss'.
LossName = Annotated[str, Contains('loss', why="keys without 'loss' are logged, not "
                                              'optimised')]
InitCfg = Optional[Union[dict, Sequence[dict]]]
PathLike = Annotated[Union[str, os.PathLike], Described('a file path (a string or os.PathLike)')]


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


#: Plain types: what a value must be, in words, and the test.
_PLAIN = {
    Any: ('any value', lambda v: True),
    _NONE: ('None', lambda v: v is None),
    bool: ('True or False', lambda v: isinstance(v, bool)),
    int: ('an int', _is_int),
    float: ('a finite number', lambda v: _is_number(v) and math.isfinite(v)),
    str: ('a string', lambda v: isinstance(v, str)),
    dict: ('a dict', lambda v: isinstance(v, MappingABC)),
    MappingABC: ('a dict', lambda v: isinstance(v, MappingABC)),
    os.PathLike: ('a path', lambda v: isinstance(v, os.PathLike)),
}


def _split_annotated(tp) -> Tuple[Any, tuple]:
    if typing.get_origin(tp) is Annotated:
        return tp.__origin__, tp.__metadata__
    return tp, ()


def _is_sequence(origin, args) -> bool:
    """list[X], Sequence[X], Tuple[X, ...]: any length (a fixed Tuple[X, Y] is not)."""
    return origin in (list, SequenceABC) or (origin is tuple and len(args) == 2
                                             and args[1] is Ellipsis)


# ---------------------------------------------------------------------- wording
def describe(tp) -> str:
    """What a value of annotation ``tp`` must be, in words (raises TypeError on an annotation
    the checker does not understand, which the schema test turns into a failure)."""
    base, meta = _split_annotated(tp)
    for m in meta:
        if isinstance(m, Described):
            return m.text
        if isinstance(m, _PerSideOf):
            return (f'{describe(m.item)}, for both sides or per side as a dict (valid keys: '
                    f'{list(SIDES)})')
    text = _describe_base(base)
    conditions = [m.text for m in meta if isinstance(m, Constraint) and m.text]
    return ' '.join([text, ' and '.join(conditions)]) if conditions else text


def _describe_base(tp) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if not args and tp in _PLAIN:
        return _PLAIN[tp][0]
    if origin is Literal:
        return f'one of {list(args)}'
    if origin is Union:
        text = ' or '.join(describe(a) for a in args if a is not _NONE)
        return f'{text}, or None' if _NONE in args else text
    if _is_sequence(origin, args):
        return f'a list or tuple, each item {describe(args[0])}' if args else 'a list or tuple'
    if origin is tuple:
        if len(set(args)) == 1:
            return (f'a pair, each {describe(args[0])}' if len(args) == 2 else
                    f'a list or tuple of {len(args)} items, each {describe(args[0])}')
        return f'a list or tuple of {len(args)} items: {", ".join(map(describe, args))}'
    if origin in (dict, MappingABC):
        return f'a dict, each value {describe(args[1])}'
    raise TypeError(f'the argument schema does not understand the annotation {tp!r}')


# ---------------------------------------------------------------------- checking
class _Problem(NamedTuple):
    error: type  # TypeError: wrong type; ValueError: out of range / not a choice
    name: str
    requirement: str
    value: Any
    note: str = ''


def _worst(problems) -> type:
    return ValueError if any(p.error is ValueError for p in problems) else TypeError


def _problem(value, tp, name: str, opt_ins: Collection[str]) -> Optional[_Problem]:
    """None when ``value`` fits ``tp``, else what is wrong, worded by the outermost annotation
    (per side: by the side's own, naming the side)."""
    base, meta = _split_annotated(tp)
    per_side = next((m for m in meta if isinstance(m, _PerSideOf)), None)
    if per_side is not None:
        return _per_side_problem(value, tp, per_side.item, name, opt_ins)
    inner = _base_problem(value, base, name, opt_ins)
    if inner is not None:
        return inner._replace(requirement=describe(tp)) if meta else inner
    for m in meta:
        if isinstance(m, Constraint) and not (m.opt_in and m.opt_in in opt_ins) \
                and not m.holds(value):
            note = '; '.join(text for text in (m.why, m.hint if m.opt_in else '') if text)
            return _Problem(ValueError, name, describe(tp), value, note)
    return None


def _per_side_problem(value, tp, item, name, opt_ins) -> Optional[_Problem]:
    if isinstance(value, MappingABC):
        unknown = sorted(set(value) - set(SIDES), key=str)
        if unknown:
            return _Problem(ValueError, name, describe(tp), value, f'unknown keys {unknown}')
        sides = dict(value)
    else:  # one value for both sides: checked as each side gets it
        sides = {side: value for side in SIDES}
    for side, v in sides.items():
        p = _problem(v, item, f'{name} ({side})', opt_ins)
        if p is not None:
            return p
    return None


def _base_problem(value, tp, name: str, opt_ins) -> Optional[_Problem]:
    origin, args = typing.get_origin(tp), typing.get_args(tp)

    def fails(error=TypeError, note=''):
        return _Problem(error, name, describe(tp), value, note)

    if not args and tp in _PLAIN:
        return None if _PLAIN[tp][1](value) else fails()
    if origin is Literal:
        if any(value == a and type(value) is type(a) for a in args):
            return None
        return fails(ValueError if any(type(value) is type(a) for a in args) else TypeError)
    if origin is Union:
        problems = [_problem(value, a, name, opt_ins) for a in args]
        if any(p is None for p in problems):
            return None
        # The right type in the wrong range: a ValueError, with that range's note.
        near = [p for p in problems if p.error is ValueError]
        return fails(_worst(problems), near[0].note if len(near) == 1 else '')
    if origin in (list, tuple, SequenceABC):
        if not isinstance(value, (list, tuple)):
            return fails()
        if not _is_sequence(origin, args) and len(value) != len(args):
            return fails(ValueError)
        items = args if not _is_sequence(origin, args) else [args[0]] * len(value)
        problems = [p for p in (_problem(v, a, f'{name}[{i}]', opt_ins)
                                for i, (v, a) in enumerate(zip(value, items))) if p]
        return fails(_worst(problems)) if problems else None
    if origin in (dict, MappingABC):
        if not isinstance(value, MappingABC):
            return fails()
        problems = [p for k, v in value.items()
                    for p in (_problem(k, args[0], name, opt_ins),
                              _problem(v, args[1], f'{name}[{k!r}]', opt_ins)) if p]
        return fails(_worst(problems)) if problems else None
    raise TypeError(f'{name}: the argument schema does not understand the annotation {tp!r}')


def check_value(value, tp, name: str, opt_ins: Collection[str] = ()) -> None:
    """Raise TypeError / ValueError ``<name> must be <requirement>, got <value>`` unless
    ``value`` fits the annotation ``tp``; ranges whose ``opt_in`` is in ``opt_ins`` are
    lifted."""
    p = _problem(value, tp, name, opt_ins)
    if p is None:
        return
    shown = reprlib.repr(p.value)
    if p.error is TypeError:
        shown += f' ({type(p.value).__name__})'
    raise p.error(f'{p.name} must be {p.requirement}, got {shown}'
                  f'{f"; {p.note}" if p.note else ""}.')


# ---------------------------------------------------------------------- schemas
@functools.lru_cache(maxsize=None)
def argument_schema(cls: type) -> Tuple[Dict[str, inspect.Parameter], Dict[str, Any], bool]:
    """The keyword arguments ``cls(...)`` accepts, along the MRO as ``**kwargs`` carries them:
    ``(parameters, annotations, closed)``. The nearest ``__init__`` declaring a name wins;
    ``annotations`` holds only the declared ones; ``closed`` is False when the chain ends in a
    ``**kwargs`` that accepts anything (then unknown names are not refused)."""
    params: Dict[str, inspect.Parameter] = {}
    hints: Dict[str, Any] = {}
    for klass in cls.__mro__:
        init = vars(klass).get('__init__')
        if init is None:
            continue
        if klass in (nn.Module, object):
            return params, hints, True
        declared = typing.get_type_hints(init, include_extras=True)
        signature = inspect.signature(init).parameters.values()
        for p in signature:
            if p.name != 'self' and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) \
                    and p.name not in params:
                params[p.name] = p
                if p.name in declared:
                    hints[p.name] = declared[p.name]
        if not any(p.kind == p.VAR_KEYWORD for p in signature):
            return params, hints, True
    return params, hints, False


def bind_arguments(cls: type, args: tuple, kwargs: dict) -> Optional[dict]:
    """``cls(*args, **kwargs)``'s arguments by name (what ``**kwargs`` collects merged in);
    None when they do not bind (``__init__`` then raises Python's own error)."""
    signature = inspect.signature(cls.__init__)
    try:
        bound = signature.bind(None, *args, **kwargs)
    except TypeError:
        return None
    out = {}
    for name, value in list(bound.arguments.items())[1:]:
        kind = signature.parameters[name].kind
        if kind == inspect.Parameter.VAR_KEYWORD:
            out.update(value)
        elif kind != inspect.Parameter.VAR_POSITIONAL:
            out[name] = value
    return out


def check_arguments(cls: type, arguments: dict, owner: Optional[str] = None,
                    opt_ins: Collection[str] = ()) -> None:
    """Check ``cls(**arguments)`` against ``cls``'s schema before it is built.

    Unknown names raise TypeError listing the arguments; each given value is checked with
    :func:`check_value` as ``<owner> argument <name>`` (``owner`` defaults to the class name;
    the distiller passes ``Block 'b': LogitKD``).
    """
    owner = owner or cls.__name__
    params, hints, closed = argument_schema(cls)
    unknown = sorted(set(arguments) - set(params), key=str)
    if closed and unknown:
        raise TypeError(f'{owner} got unknown argument(s) {unknown}; its arguments are '
                        f'{sorted(params)}.')
    for name, value in arguments.items():
        if name in hints:
            check_value(value, hints[name], f'{owner} argument {name}', opt_ins)
