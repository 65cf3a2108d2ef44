"""Write docs/methods/reference.md: every registered method's and schedule's arguments.

    python tools/docs/gen_methods_reference.py            # (re)write the page
    python tools/docs/gen_methods_reference.py --check    # exit 1 if it is stale or incomplete

The page is generated, never edited by hand, so it cannot drift from the code:

* which methods: every class in ``mmkd.registry.MODELS`` that subclasses
  :class:`~mmkd.methods.BaseDistillMethod`; which schedules: ``SCHEDULES`` of
  :mod:`mmkd.distillers.loss_weights`;
* each argument's type and range: its ``__init__`` annotation, worded by
  :func:`mmkd.utils.arguments.describe` (the same schema every construction is checked against);
  its default: the signature's; its meaning: the ``Args:`` entry of the nearest class along the
  MRO that documents it (an entry that only says ``see :class:`X``` is followed to X's);
* what a method expects and gives: its docstring's description, in which a ``Block:`` paragraph
  names the record points, shapes and returned losses; its source: the docstring's
  ``References:`` section (paper and the authors' code).

A method without a ``Block:`` paragraph or ``References:`` section, or an argument without a
meaning, is a problem: the tool lists them all and writes nothing (exit status 1), so that
``tests/test_docs.py`` fails until the docstring says it. The page is deterministic (sorted
names, no dates), so ``--check`` (and that test) compares it byte for byte.
"""
import argparse
import inspect
import os
import os.path as osp
import re
import sys
from typing import Dict, List, NamedTuple, Optional, Tuple

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
PAGE = osp.join('docs', 'methods', 'reference.md')
COMMAND = 'python tools/docs/gen_methods_reference.py'
#: Arguments every method takes from MMEngine's BaseModule: described once, above the tables.
COMMON = ('init_cfg',)
SECTION = re.compile(r'^(Args|Arguments|References|Returns|Raises|Note|Notes|Example|Examples)'
                     r':\s*$')
#: ``name (type), other, third (type): meaning`` -- one or several names sharing a meaning.
ENTRY = re.compile(r'^(?P<names>\*{0,2}\w+(?:\s*\([^)]*\))?(?:\s*,\s*\*{0,2}\w+'
                   r'(?:\s*\([^)]*\))?)*)\s*:(?:\s+(?P<text>.*))?$')
SEE = re.compile(r'^see :class:`~?(?:[\w.]*\.)?(?P<cls>\w+)`\s*(?P<rest>.*)$')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Write docs/methods/reference.md from the registered distillation '
                    'methods\' and loss-weight schedules\' signatures and docstrings; list '
                    'arguments without a meaning (and methods without a Block: paragraph or '
                    'a References: section) and write nothing while there are any.')
    parser.add_argument('--check', action='store_true',
                        help='write nothing; exit 1 if the page differs from what would be '
                             'written, or if anything is undocumented')
    parser.add_argument('--out', default=osp.join(REPO, PAGE),
                        help=f'the page to write or check (default: {PAGE})')
    return parser.parse_args(argv)


# ---------------------------------------------------------------------- docstrings
class Docstring(NamedTuple):
    description: List[str]      # paragraphs (a literal block is one paragraph, kept as lines)
    args: Dict[str, str]        # name -> meaning, continuation lines joined
    references: List[str]       # one line per reference


def parse_docstring(doc: Optional[str]) -> Docstring:
    """Split a Google-style docstring: description paragraphs, ``Args:``, ``References:``.

    A section runs while lines are indented; a line back at the left margin resumes the
    description (RTK's ``Logs ...`` line after its arguments)."""
    lines = inspect.cleandoc(doc or '').splitlines()
    description, args, references = [], {}, []
    text: List[str] = []
    i = 0
    while i < len(lines):
        header = SECTION.match(lines[i])
        if not header:
            text.append(lines[i])
            i += 1
            continue
        body = []
        i += 1
        while i < len(lines) and (not lines[i].strip() or lines[i][:1].isspace()):
            body.append(lines[i])
            i += 1
        if header.group(1) in ('Args', 'Arguments'):
            args.update(_parse_args_section(body))
        elif header.group(1) == 'References':
            references += [' '.join(item.split()) for item in _items(body)]
        else:  # Returns, Notes...: shown as description
            text += [f'{header.group(1)}:'] + [line.strip() for line in body]
    description = _paragraphs(text)
    return Docstring(description, args, references)


def _items(body: List[str]) -> List[str]:
    """Entries of a section: a line at the section's indentation starts one, deeper lines
    continue it."""
    indent = min((len(line) - len(line.lstrip()) for line in body if line.strip()), default=0)
    items: List[str] = []
    for line in body:
        if not line.strip():
            continue
        if len(line) - len(line.lstrip()) == indent or not items:
            items.append(line.strip())
        else:
            items[-1] += ' ' + line.strip()
    return items


def _parse_args_section(body: List[str]) -> Dict[str, str]:
    out = {}
    for item in _items(body):
        match = ENTRY.match(item)
        if not match:
            continue
        names = [re.sub(r'\(.*', '', n).strip().lstrip('*')
                 for n in _split_names(match.group('names'))]
        for name in names:
            out[name] = (match.group('text') or '').strip()
    return out


def _split_names(names: str) -> List[str]:
    """``a (int), b, c (str | None)`` -> three names, commas inside parentheses ignored."""
    parts, depth, current = [], 0, ''
    for ch in names:
        depth += ch == '('
        depth -= ch == ')'
        if ch == ',' and depth == 0:
            parts.append(current)
            current = ''
        else:
            current += ch
    return parts + [current]


def _paragraphs(lines: List[str]) -> List[str]:
    """Paragraphs joined into single lines; an RST literal block (after ``::``) kept as a
    fenced code block."""
    out: List[str] = []
    current: List[str] = []
    literal: Optional[List[str]] = None
    for line in lines + ['']:
        if literal is not None:
            if not line.strip() or line[:1].isspace():
                literal.append(line)
                continue
            out.append(_fence(literal))
            literal = None
        if not line.strip():
            if current:
                paragraph = ' '.join(current)
                current = []
                if paragraph.endswith('::'):
                    out.append(paragraph[:-1])
                    literal = []
                else:
                    out.append(paragraph)
            continue
        current.append(line.strip())
    if literal is not None:
        out.append(_fence(literal))
    return [p for p in out if p]


def _fence(lines: List[str]) -> str:
    lines = [line.rstrip() for line in lines]
    while lines and not lines[-1]:
        lines.pop()
    while lines and not lines[0]:
        lines.pop(0)
    if not lines:
        return ''
    indent = min(len(line) - len(line.lstrip()) for line in lines if line)
    return '```text\n' + '\n'.join(line[indent:] for line in lines) + '\n```'


def to_markdown(text: str) -> str:
    """RST inline markup to Markdown: ``code``, :role:`~a.b.c` (c) / :role:`a.b` (a.b)."""
    if text.startswith('```'):
        return text
    text = re.sub(r':\w+:`~(?:[\w.]*\.)?([^`]+)`', r'`\1`', text)
    text = re.sub(r':\w+:`([^`]+)`', r'`\1`', text)
    return re.sub(r'``(.+?)``', r'`\1`', text)


def cell(text: str) -> str:
    return to_markdown(' '.join(text.split())).replace('|', '\\|')


# ---------------------------------------------------------------------- what is documented
class Argument(NamedTuple):
    name: str
    requirement: str
    default: str
    meaning: Optional[str]   # None: nobody documents it


def own_doc(klass) -> Docstring:
    return parse_docstring(vars(klass).get('__doc__'))


def meaning_of(cls, name: str, start: int = 0, seen=()) -> Optional[str]:
    """The ``Args:`` entry for ``name`` of the nearest class in ``cls.__mro__[start:]`` that
    documents it; ``see :class:`X``` is followed to X's entry (its own words appended)."""
    for klass in cls.__mro__[start:]:
        text = own_doc(klass).args.get(name)
        if text is None:
            continue
        see = SEE.match(text)
        if not see:
            return text
        target = next((i for i, k in enumerate(cls.__mro__) if k.__name__ == see.group('cls')),
                      None)
        if target is None or (target, name) in seen:
            return None
        found = meaning_of(cls, name, target, seen + ((target, name),))
        if found is None:
            return None
        rest = see.group('rest').strip(' .')
        return f'{found} {rest}.' if rest else found
    return None


def arguments(cls) -> List[Argument]:
    from mmkd.utils.arguments import argument_schema, describe
    params, hints, _ = argument_schema(cls)
    out = []
    for name, param in params.items():
        requirement = describe(hints[name]) if name in hints else 'not declared'
        default = ('required' if param.default is inspect.Parameter.empty
                   else f'`{param.default!r}`')
        out.append(Argument(name, requirement, default, meaning_of(cls, name)))
    return out


def registered_methods() -> List[Tuple[str, type]]:
    """(registered name, class) of every mmkd method, sorted by name (a user's own methods,
    registered from elsewhere, are not mmkd's to document)."""
    import mmkd  # noqa: F401  (fills the registry)
    from mmkd.methods import BaseDistillMethod
    from mmkd.registry import MODELS
    return sorted((name, cls) for name, cls in MODELS.module_dict.items()
                  if isinstance(cls, type) and issubclass(cls, BaseDistillMethod)
                  and cls.__module__.startswith('mmkd.') and not inspect.isabstract(cls))


def schedules() -> List[Tuple[str, type]]:
    from mmkd.distillers.loss_weights import SCHEDULES
    return sorted(SCHEDULES.items())


def says_something(meaning: str) -> bool:
    """False for an entry that only states the default (``loss_name (str): Default 'x'.``):
    the default is its own column."""
    return bool(re.sub(r'(^|(?<=\.)\s)Default\b[^.]*(\.|$)', '', meaning).strip(' .;,'))


def problems(methods, schedule_classes) -> List[str]:
    """What the page cannot say: arguments without a meaning, methods without a ``Block:``
    paragraph (what to record) or a ``References:`` section (where it comes from)."""
    found = []
    for kind, entries in (('method', methods), ('schedule', schedule_classes)):
        for name, cls in entries:
            where = f'{cls.__module__}.{cls.__qualname__}'
            for arg in arguments(cls):
                if arg.meaning is None or not says_something(arg.meaning):
                    found.append(f'{kind} {name}: argument `{arg.name}` has no meaning in any '
                                 f'Args: section along its MRO (document it in {where})')
            if kind == 'method':
                doc = own_doc(cls)
                if not any(p.startswith('Block:') for p in doc.description):
                    found.append(f'method {name}: no "Block:" paragraph (record points, shapes, '
                                 f'returned losses) in the docstring of {where}')
                if not doc.references:
                    found.append(f'method {name}: no "References:" section (paper, authors\' '
                                 f'code) in the docstring of {where}')
    return found


# ---------------------------------------------------------------------- the page
def _source_link(cls) -> str:
    path = osp.relpath(inspect.getsourcefile(cls), REPO)
    return f'[`{path}`](../../{path})'


def _table(args: List[Argument]) -> List[str]:
    rows = [a for a in args if a.name not in COMMON]
    if not rows:
        return ['No arguments.', '']
    lines = ['| argument | type and range | default | meaning |', '|---|---|---|---|']
    lines += [f'| `{a.name}` | {cell(a.requirement)} | {a.default} | {cell(a.meaning or "")} |'
              for a in rows]
    return lines + ['']


def _section(name: str, cls, level: str, show_source: bool) -> List[str]:
    doc = own_doc(cls)
    lines = [f'{level} {name}', '']
    for paragraph in doc.description:
        lines += [re.sub(r'^Block:', '**Block:**', to_markdown(paragraph)), '']
    if show_source:
        lines += ['**Source:**', ''] + [f'- {to_markdown(r)}' for r in doc.references] + ['']
    lines += [f'Code and full docstrings: {_source_link(cls)}.', '']
    return lines + _table(arguments(cls))


def _summary(doc: Docstring) -> str:
    return cell(doc.description[0]) if doc.description else ''


def render(methods, schedule_classes) -> str:
    from mmkd.methods import BaseDistillMethod
    common = '; '.join(f'`{n}`: {cell(meaning_of(BaseDistillMethod, n) or "").rstrip(".")}'
                       for n in COMMON)
    lines = [
        '# Method reference',
        '',
        f'<!-- Generated by `{COMMAND}` from the registered methods\' signatures and '
        'docstrings. Do not edit: change the docstring (or the signature) and run the command '
        'again; tests/test_docs.py fails while this page is stale. -->',
        '',
        'Every distillation method registered in `mmkd.registry.MODELS` '
        '(`method=dict(type=NAME, ...)` in a block) and every loss-weight schedule '
        '(`loss_weight=dict(type=NAME, ...)`), with its arguments. "Type and range" is the '
        'argument\'s declared schema: every construction checks the given values against it '
        'and fails naming the block, the argument and the value '
        '(`mmkd.utils.arguments`). How blocks, record points and methods fit together: '
        '[concepts](../concepts.md#methods). Each method also takes ' + common + '.',
        '',
        'The guides beside this page (recipes, published numbers, design choices): '
        + ', '.join(f'[{page}]({page})' for page in guides()) + '.',
        '',
        '| method | what it does | source |',
        '|---|---|---|',
    ]
    for name, cls in methods:
        doc = own_doc(cls)
        source = cell(re.sub(r'^Paper:\s*', '', doc.references[0])) if doc.references else ''
        lines.append(f'| [`{name}`](#{name.lower()}) | {_summary(doc)} | {source} |')
    lines += ['', '## Loss-weight schedules', '',
              'A block\'s `loss_weight` is a number or one of these; the weight in use is '
              'logged as `distill.<block>.weight`. `t` is the 1-based iteration (or epoch, '
              'with `by_epoch=True`).', '']
    lines += [f'- [`{name}`](#{name.lower()}): {_summary(own_doc(cls))}'
              for name, cls in schedule_classes]
    lines.append('')
    for name, cls in schedule_classes:
        lines += _section(name, cls, '###', show_source=False)
    lines += ['## Methods', '']
    for name, cls in methods:
        lines += _section(name, cls, '###', show_source=True)
    while lines[-1] == '':
        lines.pop()
    return '\n'.join(lines) + '\n'


def guides() -> List[str]:
    """The other pages in docs/methods (by file name: a retitled guide does not make this
    page stale)."""
    folder = osp.join(REPO, osp.dirname(PAGE))
    return sorted(f for f in os.listdir(folder)
                  if f.endswith('.md') and f != osp.basename(PAGE))


def build_page() -> Tuple[str, List[str]]:
    """The page as it should be now, and the problems that keep it from being complete."""
    methods, schedule_classes = registered_methods(), schedules()
    return render(methods, schedule_classes), problems(methods, schedule_classes)


def main(argv=None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, REPO)  # run from a clone
    text, found = build_page()
    if found:
        print(f'{len(found)} thing(s) undocumented; {osp.relpath(args.out)} not '
              f'{"checked" if args.check else "written"}:', file=sys.stderr)
        for line in found:
            print(f'  - {line}', file=sys.stderr)
        return 1
    old = open(args.out, encoding='utf-8').read() if osp.exists(args.out) else None
    if args.check:
        if old != text:
            print(f'{osp.relpath(args.out)} is stale (a method, schedule, signature or '
                  f'docstring changed): run `{COMMAND}`.', file=sys.stderr)
            return 1
        print(f'{osp.relpath(args.out)} is up to date.')
        return 0
    if old != text:
        with open(args.out, 'w', encoding='utf-8') as f:
            f.write(text)
        print(f'wrote {osp.relpath(args.out)}')
    else:
        print(f'{osp.relpath(args.out)} was already up to date')
    return 0


if __name__ == '__main__':
    sys.exit(main())
