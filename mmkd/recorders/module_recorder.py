"""Forward hooks that capture what named modules produce (or receive) during one step.

A *record point* names a module inside a model (``'neck'``, ``'backbone.layer4'``,
``'head.fc'``), whether its output or its first positional input is wanted, and optionally an
index into a tuple/list output (``'neck[0]'`` is the first FPN level). Strings are shorthand::

    'neck'                 -> output of model.neck (a tuple of FPN levels stays a tuple)
    'neck[2]'              -> third element of that output
    'head.fc@input'        -> first positional input of model.head.fc
    dict(module='head.fc', source='input', index=None)   # the same, spelled out

If a module runs several times in one forward (a detection head shared across FPN levels), the
recorded value is the tuple of all its calls, in call order.

Block specs may use wildcards in module names (``*`` and ``?``, matched per dotted component):
``'backbone.layer*.*'`` is every residual block of every stage, ``'backbone.layer3.*'`` every
block of one stage; :func:`expand_points` turns them into lists of points, in module order.

To keep only some of the matches, give the point as a dict with ``matches``, a Python slice
(``'start:stop:step'``) over the list of matching modules, in module order::

    dict(module='backbone.layer*.*', matches='1::2')   # every second block: 2nd, 4th, ...
    dict(module='backbone.layer*.*.preact', matches='1:', source='output', index=None)

The slice runs over all matches of the pattern together (across stages), not per stage; AFD's
ResNet-110 teacher takes ``'1::2'`` (27 of 54 blocks). There is no string shorthand: brackets
already mean an index into the output (``'neck[0]'``). A slice that cannot be parsed, has step
0 or selects nothing is a ValueError naming the point and the number of matches.
"""
import difflib
import fnmatch
import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Union

import torch.nn as nn

_POINT_RE = re.compile(r'^(?P<module>[^\[@]*)(\[(?P<index>-?\d+)\])?(@(?P<source>input|output))?$')


class StopForward(Exception):
    """Raised from a hook to end a forward pass early (nothing after it is needed)."""


@dataclass(frozen=True)
class RecordPoint:
    """Where to record: ``module`` name, ``source`` ('output' | 'input'), optional ``index``."""
    module: str
    source: str = 'output'
    index: Optional[int] = None

    def __str__(self) -> str:
        s = self.module or '<model>'
        if self.index is not None:
            s += f'[{self.index}]'
        if self.source != 'output':
            s += f'@{self.source}'
        return s


def parse_point(spec: Union[str, dict, RecordPoint]) -> RecordPoint:
    """Turn ``'neck[0]'``, ``'head.fc@input'`` or ``dict(module=..., source=..., index=...)``
    into a :class:`RecordPoint`."""
    if isinstance(spec, RecordPoint):
        return spec
    if isinstance(spec, str):
        m = _POINT_RE.match(spec.strip())
        if m is None:
            raise ValueError(f'Cannot parse record point {spec!r}: expected "module", '
                             '"module[index]" or "module@input" (to keep every k-th match of a '
                             "wildcard, use dict(module=..., matches='start:stop:step')).")
        index = m.group('index')
        return RecordPoint(m.group('module'), m.group('source') or 'output',
                           None if index is None else int(index))
    if isinstance(spec, dict):
        if 'matches' in spec:
            raise ValueError(f'Record point {spec!r}: "matches" selects among the modules a '
                             'wildcard pattern matches; expand the point with expand_points '
                             '(the distiller does this for every block) before parsing it.')
        unknown = set(spec) - {'module', 'source', 'index'}
        if unknown or 'module' not in spec:
            raise ValueError(f'Record point {spec!r}: valid keys are module (required), '
                             f'source, index, matches; got unknown {sorted(unknown)}.')
        source = spec.get('source', 'output')
        if source not in ('output', 'input'):
            raise ValueError(f'Record point {spec!r}: source must be "output" or "input", '
                             f'got {source!r}.')
        return RecordPoint(spec['module'], source, spec.get('index'))
    raise TypeError(f'A record point is a str or dict, got {type(spec).__name__}: {spec!r}')


_SLICE_RE = re.compile(r'^\s*(-?\d+)?\s*:\s*(-?\d+)?\s*(:\s*(-?\d+)?\s*)?$')


def _is_pattern(spec) -> bool:
    """Whether ``spec`` names several modules: a wildcard, or a dict with ``matches``."""
    if isinstance(spec, str):
        return any(c in spec.split('@')[0] for c in '*?')
    if isinstance(spec, dict):
        return 'matches' in spec or any(c in str(spec.get('module', '')) for c in '*?')
    return False


def _parse_slice(matches, spec, num_matches: int) -> slice:
    """``'1::2'`` -> ``slice(1, None, 2)``; errors name the point and the number of matches."""
    where = (f'Record point {spec!r}: the pattern matches {num_matches} modules, and '
             f'matches={matches!r}')
    m = _SLICE_RE.match(matches) if isinstance(matches, str) else None
    if m is None:
        raise ValueError(f"{where} is not a slice; write 'start:stop:step' as in Python, "
                         "e.g. '1::2' (every second match from the second) or '1:'.")
    start, stop, step = (None if g is None else int(g) for g in m.group(1, 2, 4))
    if step == 0:
        raise ValueError(f'{where} has step 0; the step must be a non-zero integer.')
    return slice(start, stop, step)


def expand_points(spec, model: nn.Module, model_desc: str = 'model'):
    """Expand wildcard module names in a block spec (a point or a list of points).

    Returns ``spec`` unchanged when it has no wildcard and no ``matches``, else a list of
    :class:`RecordPoint` (one per matching module, in ``named_modules`` order, with the
    pattern's index/source), cut down to ``spec['matches']`` (a slice string, see the module
    docstring) for a dict point. A pattern matching nothing, or a slice that is malformed or
    keeps nothing, raises (KeyError / ValueError) naming the point.
    """
    specs = list(spec) if isinstance(spec, (list, tuple)) else [spec]
    if not any(_is_pattern(s) for s in specs):
        return spec
    names = [n for n, _ in model.named_modules() if n]
    out = []
    for s in specs:
        if not _is_pattern(s):
            out.append(s)
            continue
        matches = None
        if isinstance(s, dict):
            matches = s.get('matches')
            point = parse_point({k: v for k, v in s.items() if k != 'matches'})
        else:
            point = parse_point(s)
        parts = point.module.split('.')
        matched = [n for n in names if len(n.split('.')) == len(parts) and all(
            fnmatch.fnmatchcase(a, b) for a, b in zip(n.split('.'), parts))]
        if not matched:
            raise KeyError(f'Pattern {s!r} matches no module in the {model_desc} '
                           f'({type(model).__name__}); wildcards match one dotted component '
                           "each, e.g. 'backbone.layer*.*'.")
        if matches is not None:
            kept = matched[_parse_slice(matches, s, len(matched))]
            if not kept:
                raise ValueError(f'Record point {s!r}: matches={matches!r} keeps none of the '
                                 f'{len(matched)} modules the pattern matches in the '
                                 f'{model_desc} (first {matched[0]!r}, last {matched[-1]!r}).')
            matched = kept
        out.extend(RecordPoint(n, point.source, point.index) for n in matched)
    return out


def find_module(model: nn.Module, name: str, model_desc: str = 'model') -> nn.Module:
    """``model.get_submodule(name)`` with an error that lists the closest valid names."""
    modules = dict(model.named_modules())
    if name in modules:
        return modules[name]
    names = [n for n in modules if n]
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
    if not close:  # e.g. 'layer4' when the real name is 'backbone.layer4'
        close = [n for n in names if n.endswith('.' + name) or name in n][:5]
    top = sorted({n.split('.')[0] for n in names})
    hint = (f' Closest names: {close}.' if close else '') + f' Top-level modules: {top}.'
    raise KeyError(f'No module named {name!r} in the {model_desc} '
                   f'({type(model).__name__}).{hint}')


class RecordPointError(IndexError):
    """A record point's index does not fit what its module produced (wrong index, or an index
    into something that is not a tuple/list)."""


def _describe(value) -> str:
    if hasattr(value, 'shape'):
        return f'a {type(value).__name__} of shape {tuple(value.shape)}'
    if isinstance(value, (tuple, list)):
        return f'a {type(value).__name__} of length {len(value)}'
    return f'a {type(value).__name__}'


def _select(value, point: RecordPoint, model_desc: str = 'model'):
    if point.index is None:
        return value
    if not isinstance(value, (tuple, list)):
        raise RecordPointError(
            f'Record point {str(point)!r} in the {model_desc}: index [{point.index}] given, but '
            f'the module {point.source} is {_describe(value)}, not a tuple/list; drop the '
            'index.')
    if not -len(value) <= point.index < len(value):
        raise RecordPointError(
            f'Record point {str(point)!r} in the {model_desc}: index [{point.index}] is out of '
            f'range: the module {point.source} is {_describe(value)} (valid indices '
            f'0..{len(value) - 1}).')
    return value[point.index]


class ModuleRecorder:
    """Records a set of points in one model with forward hooks.

    Args:
        model: the model to hook.
        points: the points to record.
        model_desc: 'student' / 'teacher', used in error messages.

    Use :meth:`recording` around a forward; read :attr:`data` (point -> value) after it. Call
    :meth:`stop_after` with the last point to fire (found in a dry run) to end the forward early
    there by raising :class:`StopForward`; the caller catches it.
    """

    def __init__(self, model: nn.Module, points: Sequence[RecordPoint], model_desc='model'):
        self.model = model
        self.points: List[RecordPoint] = list(dict.fromkeys(points))
        self.data: Dict[RecordPoint, list] = {}
        # Selection errors, kept so that a caller which tolerates errors after the last point
        # (the dry run) still sees them.
        self.errors: Dict[RecordPoint, Exception] = {}
        self.model_desc = model_desc
        self.enabled = False
        self.call_order: List[RecordPoint] = []  # filled while recording, used by the dry run
        self._stop = None  # (point, number of calls after which to stop)
        self._handles = []
        for point in self.points:
            module = find_module(model, point.module, model_desc)
            if point.source == 'output':
                hook = module.register_forward_hook(self._make_hook(point))
            else:
                hook = module.register_forward_pre_hook(self._make_hook(point))
            self._handles.append(hook)

    def _make_hook(self, point: RecordPoint):
        def hook(module, args, output=None):
            if not self.enabled:
                return
            value = output if point.source == 'output' else (args[0] if args else None)
            try:
                selected = _select(value, point, self.model_desc)
            except RecordPointError as e:
                self.errors[point] = e
                raise
            # Stored only once the selection worked: a point is never "recorded" empty.
            calls = self.data.setdefault(point, [])
            calls.append(selected)
            self.call_order.append(point)
            if self._stop is not None and self._stop == (point, len(calls)):
                raise StopForward
        return hook

    def stop_after(self, point: Optional[RecordPoint], num_calls: int = 1):
        """End each recorded forward right after ``point`` fired ``num_calls`` times."""
        self._stop = None if point is None else (point, num_calls)

    def start(self):
        self.data = {}
        self.errors = {}
        self.call_order = []
        self.enabled = True

    def finish(self):
        self.enabled = False
        missing = [str(p) for p in self.points if p not in self.data]
        if missing:
            raise RuntimeError(f'Record points {missing} did not run during the forward pass. '
                               'Check that these modules are used in this mode.')

    def get(self, point: RecordPoint):
        calls = self.data[point]
        return calls[0] if len(calls) == 1 else tuple(calls)

    def remove(self):
        for h in self._handles:
            h.remove()
        self._handles = []
