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
                             '"module[index]" or "module@input".')
        index = m.group('index')
        return RecordPoint(m.group('module'), m.group('source') or 'output',
                           None if index is None else int(index))
    if isinstance(spec, dict):
        unknown = set(spec) - {'module', 'source', 'index'}
        if unknown or 'module' not in spec:
            raise ValueError(f'Record point {spec!r}: valid keys are module (required), '
                             f'source, index; got unknown {sorted(unknown)}.')
        source = spec.get('source', 'output')
        if source not in ('output', 'input'):
            raise ValueError(f'Record point {spec!r}: source must be "output" or "input", '
                             f'got {source!r}.')
        return RecordPoint(spec['module'], source, spec.get('index'))
    raise TypeError(f'A record point is a str or dict, got {type(spec).__name__}: {spec!r}')


def _has_wildcard(spec) -> bool:
    return isinstance(spec, str) and any(c in spec.split('@')[0] for c in '*?')


def expand_points(spec, model: nn.Module, model_desc: str = 'model'):
    """Expand wildcard module names in a block spec (a point or a list of points).

    Returns ``spec`` unchanged when it has no wildcard, else a list of :class:`RecordPoint`
    (one per matching module, in ``named_modules`` order, with the pattern's index/source).
    A pattern matching nothing raises a KeyError naming it.
    """
    specs = list(spec) if isinstance(spec, (list, tuple)) else [spec]
    if not any(_has_wildcard(s) for s in specs):
        return spec
    names = [n for n, _ in model.named_modules() if n]
    out = []
    for s in specs:
        if not _has_wildcard(s):
            out.append(s)
            continue
        point = parse_point(s)
        parts = point.module.split('.')
        matched = [n for n in names if len(n.split('.')) == len(parts) and all(
            fnmatch.fnmatchcase(a, b) for a, b in zip(n.split('.'), parts))]
        if not matched:
            raise KeyError(f'Pattern {s!r} matches no module in the {model_desc} '
                           f'({type(model).__name__}); wildcards match one dotted component '
                           "each, e.g. 'backbone.layer*.*'.")
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
