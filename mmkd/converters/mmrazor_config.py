"""Convert an MMRazor 1.x distillation config into an mmkd config (issue 31).

``convert_config(path)`` reads the MMRazor config the user names (``Config.fromfile`` of a
temporary copy whose ``_base_`` paths are made absolute and whose scopes are renamed:
``mmcls::`` -> ``mmpretrain::``), and writes the mmkd config text: the MMRazor config's own
``_base_`` list (a local MMRazor base replaced by its own bases), ``model = dict(_delete_=True,
type='mmkd.Distiller', student='<architecture.cfg_path>', teacher=..., blocks=...)`` and the
file's own top-level settings (those naming MMRazor classes left out with a note); a config
without bases of its own inherits the student's config (``student={{_base_.model}}``). What cannot be expressed is listed by name (``unsupported``);
without ``allow_partial`` that raises :class:`ConversionError`.
"""
import ast
import os
import os.path as osp
import re
import shutil
import tempfile
import textwrap
from dataclasses import dataclass, field
from typing import Dict, List

SCOPE_RENAMES = {'mmcls::': 'mmpretrain::', 'mmcls.': 'mmpretrain.'}
SUPPORTED_DISTILLERS = ('SingleTeacherDistill', 'FpnTeacherDistill',
                        'OverhaulFeatureDistillation')
REFUSED_DISTILLERS = {
    'DataFreeDistillation': 'mmkd has no data-free distillation (no generator training loop)',
    'DAFLDataFreeDistillation': 'mmkd has no data-free distillation',
    'SelfDistill': 'mmkd has no self-distillation (the student is its own teacher)',
}
# MMRazor recorder kinds mmkd's record points cannot express, and why.
UNSUPPORTED_RECORDERS = {
    'MethodOutputs': 'mmkd records module outputs/inputs only, not a method\'s return value',
    'MethodInputs': 'mmkd records module outputs/inputs only, not a method\'s arguments',
    'FunctionOutputs': 'mmkd records module outputs/inputs only, not a function\'s return',
    'FunctionInputs': 'mmkd records module outputs/inputs only, not a function\'s arguments',
    'ParameterOutputs': 'mmkd records activations, not parameters',
}
# loss-forward arguments that carry labels / data samples (mmkd methods read them themselves)
LABEL_ARGS = ('gt_labels', 'data_samples', 'gt_label')


class ConversionError(ValueError):
    """The config holds something mmkd cannot express (each item named)."""


@dataclass
class ConversionResult:
    text: str
    unsupported: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)
    connector_map: Dict[str, str] = field(default_factory=dict)


def _rename(s: str) -> str:
    for old, new in SCOPE_RENAMES.items():
        s = s.replace(old, new)
    return re.sub(r"""(['"])mmcls\1""", r"\1mmpretrain\1", s)  # _scope_='mmcls'


def _mmrazor_tree(path: str, ref: str) -> str:
    """``mmrazor::X`` -> ``<the configs/ folder holding path>/X`` when that file exists (the
    source config sits in MMRazor's own config tree), else a ConversionError."""
    rel = ref.split('::', 1)[1]
    d = osp.dirname(osp.abspath(path))
    while d and d != osp.dirname(d):
        if osp.basename(d) == 'configs' and osp.isfile(osp.join(d, rel)):
            return osp.join(d, rel)
        d = osp.dirname(d)
    raise ConversionError(f'{ref!r} is in MMRazor\'s own config tree, which is not '
                          'installed, and no configs/ folder above the source config holds '
                          'it (give its file path instead)')


def _renamed_copy(path: str, tmpdir: str, seen) -> str:
    """A copy of config ``path`` in ``tmpdir`` with scopes renamed and every local or
    ``mmrazor::`` base replaced by such a copy; returns the copy's path."""
    path = osp.abspath(path)
    if path in seen:
        return seen[path]
    if not osp.isfile(path):
        raise FileNotFoundError(f'config {path!r} does not exist.')
    with open(path, encoding='utf-8') as f:
        text = f.read()
    tree = ast.parse(text, filename=path)
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == '_base_' for t in node.targets):
            value = ast.literal_eval(node.value)
            bases = [value] if isinstance(value, str) else list(value)
            new = []
            for b in bases:
                if b.startswith('mmrazor::'):
                    b = _renamed_copy(_mmrazor_tree(path, b), tmpdir, seen)
                elif '::' not in b:
                    b = _renamed_copy(osp.join(osp.dirname(path), b), tmpdir, seen)
                new.append(_rename(b))
            seg = ast.get_source_segment(text, node)
            text = text.replace(seg, f'_base_ = {new!r}', 1)
    fd, out = tempfile.mkstemp(suffix='_' + osp.basename(path), dir=tmpdir)
    with os.fdopen(fd, 'w', encoding='utf-8') as f:
        f.write(_rename(text))
    seen[path] = out
    return out


def _bases_and_keys(path: str):
    """A config file's own ``_base_`` list and the other names it assigns at top level, read
    with ``ast`` (the file is not executed here)."""
    with open(path, encoding='utf-8') as f:
        tree = ast.parse(f.read(), filename=path)
    bases, own_keys = [], []
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == '_base_' for t in node.targets):
            value = ast.literal_eval(node.value)
            bases = [value] if isinstance(value, str) else list(value)
        elif isinstance(node, ast.Assign):
            own_keys += [t.id for t in node.targets
                         if isinstance(t, ast.Name) and t.id not in own_keys]
    return bases, own_keys


def _load_mmrazor_config(path: str):
    """``Config.fromfile`` of a renamed copy of the user's file (see :func:`_renamed_copy`);
    returns the config, the file's own ``_base_`` list and the names it assigns at top level
    (its own settings, besides ``_base_``)."""
    from mmengine.config import Config
    path = osp.abspath(path)
    if not osp.isfile(path):
        raise FileNotFoundError(f'MMRazor config {path!r} does not exist.')
    bases, own_keys = _bases_and_keys(path)
    tmpdir = tempfile.mkdtemp(prefix='mmrazor2mmkd_')
    try:
        tmp = _renamed_copy(path, tmpdir, {})
        try:
            return Config.fromfile(tmp), bases, own_keys
        except Exception as e:  # an unresolvable base (mmcls 1.x names), a syntax error
            raise ConversionError(f'cannot read {path}: {type(e).__name__}: {e}') from e
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def _fmt(v, indent=0) -> str:
    """A config value as Python text, dicts as ``dict(...)``."""
    pad = ' ' * (indent + 4)
    if isinstance(v, dict):
        if not v:
            return 'dict()'
        if all(isinstance(k, str) and k.isidentifier() for k in v):
            one = 'dict(' + ', '.join(f'{k}={_fmt(x)}' for k, x in v.items()) + ')'
            if len(one) + indent < 90:
                return one
            return 'dict(\n' + ',\n'.join(f'{pad}{k}={_fmt(x, indent + 4)}'
                                          for k, x in v.items()) + ')'
        return '{' + ', '.join(f'{k!r}: {_fmt(x)}' for k, x in v.items()) + '}'
    if isinstance(v, (list, tuple)):
        inner = ', '.join(_fmt(x) for x in v)
        return f'[{inner}]' if isinstance(v, list) else f'({inner}{"," if len(v) == 1 else ""})'
    return repr(v)


def block_name(loss_name: str, taken) -> str:
    """An mmkd block name for an MMRazor loss name: without 'loss' (MMEngine optimises every
    logged key containing it) or '.': 'loss_s4' -> 's4', 'loss_kl' -> 'kl'."""
    name = loss_name.replace('.', '_')
    for pat in ('loss_', '_loss', 'loss'):
        name = name.replace(pat, '')
    name = name.strip('_') or 'block'
    out, i = name, 2
    while out in taken:
        out, i = f'{name}_{i}', i + 1
    return out


class _Converter:

    def __init__(self, cfg, src: str, bases, own_keys=()):
        self.cfg, self.src, self.bases, self.own_keys = cfg, src, bases, list(own_keys)
        self.unsupported: List[str] = []
        self.notes: List[str] = []
        self.connector_map: Dict[str, str] = {}
        self.num_classes = None

    def resolve(self, ref: str) -> str:
        """A model ``cfg_path``: ``mmrazor::X`` becomes the file in MMRazor's config tree."""
        if ref.startswith('mmrazor::'):
            return _mmrazor_tree(self.src, ref)
        return ref

    # record points ---------------------------------------------------------------------
    def point(self, recorders, where, name, record_idx=0, data_idx=None):
        rec = recorders.get(name)
        if rec is None:
            self.unsupported.append(f'{where}: recorder {name!r} is not defined')
            return None
        kind = str(rec.get('type', '')).split('.')[-1]
        source = rec.get('source', '')
        if kind in UNSUPPORTED_RECORDERS:
            self.unsupported.append(f'{where}: recorder {name!r} ({kind}, source '
                                    f'{source!r}): {UNSUPPORTED_RECORDERS[kind]}')
            return None
        if kind not in ('ModuleOutputs', 'ModuleInputs'):
            self.unsupported.append(f'{where}: recorder {name!r} of unknown kind {kind!r}')
            return None
        if record_idx:
            block, _, leaf = source.rpartition('.')
            if leaf == 'relu' and kind == 'ModuleOutputs' and record_idx in (1, 2):
                self.notes.append(
                    f'{where}: recorder {name!r} reads call {record_idx} of {source!r}: taken '
                    f'as the output of {block!r} (the ReLU after the residual sum is the last '
                    'call in mmpretrain\'s BasicBlock (call 1) and Bottleneck (call 2)); '
                    'check this for other blocks')
                source = block
            else:
                self.unsupported.append(
                    f'{where}: recorder {name!r} reads call {record_idx} of {source!r}: mmkd '
                    'records every call of a module (a tuple), it cannot pick one call')
                return None
        if kind == 'ModuleInputs':
            if data_idx not in (None, 0):
                self.unsupported.append(
                    f'{where}: recorder {name!r} (ModuleInputs of {source!r}) data_idx '
                    f'{data_idx}: mmkd records the first positional input only')
                return None
            return f'{source}@input'
        return source if data_idx is None else f'{source}[{data_idx}]'

    # one loss -> one block ---------------------------------------------------------------
    def block(self, lname, name, loss, mapping, dist):
        where = f'distill_losses.{lname}'
        ltype = str(loss.get('type', '')).split('.')[-1]
        args = {k: v for k, v in loss.items() if k != 'type'}
        sides = dict(student=[], teacher=[])
        conns = dict(student=[], teacher=[])
        for arg, rec in mapping.items():
            if arg in LABEL_ARGS:
                continue
            side = 'student' if rec.get('from_student', True) else 'teacher'
            recorders = dist.get(f'{side}_recorders') or {}
            p = self.point(recorders, f'{where}.{arg}', rec.get('recorder'),
                           rec.get('record_idx', 0), rec.get('data_idx'))
            if p is None:
                return None
            sides[side].append(p)
            if rec.get('connector'):
                conns[side].append(rec['connector'])
            if rec.get('connector_idx') is not None:
                self.unsupported.append(f'{where}.{arg}: connector_idx is not expressible')
                return None
        if len(sides['student']) != 1 or len(sides['teacher']) != 1:
            self.unsupported.append(f'{where} ({ltype}): expected one student and one teacher '
                                    f'input, got {sides}')
            return None
        connectors = dist.get('connectors') or {}
        sconn = [(c, connectors.get(c, {})) for c in conns['student']]
        tconn = [(c, connectors.get(c, {})) for c in conns['teacher']]
        fn = getattr(self, f'loss_{ltype}', None)
        if fn is None:
            self.unsupported.append(f'{where}: loss {ltype!r} has no mmkd method yet')
            return None
        out = fn(where, name, args, sconn, tconn, sides)
        if out is None:
            return None
        method, weight = out
        return dict(student=sides['student'][0], teacher=sides['teacher'][0], method=method,
                    loss_weight=weight)

    def _no_conn(self, where, ltype, sconn, tconn):
        for c, spec in sconn + tconn:
            self.unsupported.append(f'{where}: connector {c!r} ({spec.get("type")}) has no '
                                    f'equivalent for {ltype}')
        return not (sconn or tconn)

    def _extra(self, where, ltype, args, known):
        bad = sorted(set(args) - set(known))
        for k in bad:
            self.unsupported.append(f'{where}: {ltype} argument {k}={args[k]!r} has no mmkd '
                                    'equivalent')
        return not bad

    def _conv_projector(self, where, ltype, name, sconn, tconn, allowed):
        """ConvModuleConnector on the student -> a projector kind; None when impossible."""
        if tconn or len(sconn) > 1:
            for c, spec in tconn + sconn[1:]:
                self.unsupported.append(f'{where}: connector {c!r} ({spec.get("type")}) has '
                                        f'no equivalent for {ltype}')
            return None
        if not sconn:
            return 'none'
        c, spec = sconn[0]
        ctype = str(spec.get('type', '')).split('.')[-1]
        k, s = spec.get('kernel_size', 1), spec.get('stride', 1)
        norm, act = spec.get('norm_cfg'), spec.get('act_cfg', dict(type='ReLU'))
        prefix = f'distiller.connectors.{c}.conv_module.'
        target = f'methods.{name}.connectors.0.'
        if ctype == 'ConvModuleConnector' and k == 1 and s == 1:
            if norm is None and act is None and 'always' in allowed:
                self.connector_map[prefix + 'conv.'] = target
                return 'always'
            if (norm or {}).get('type') in ('BN', 'BN2d') and (act or {}).get(
                    'type') == 'ReLU' and 'convreg' in allowed:
                self.connector_map[prefix + 'conv.'] = target + '0.'
                self.connector_map[prefix + 'bn.'] = target + '1.'
                return 'convreg'
        self.unsupported.append(f'{where}: connector {c!r} ({ctype}, kernel {k}, stride {s}, '
                                f'norm {norm}, act {act}) has no equivalent projector for '
                                f'{ltype} (mmkd: {list(allowed)})')
        return None

    def _map_conv_bn(self, conn, name):
        prefix = f'distiller.connectors.{conn}.conv_module.'
        self.connector_map[prefix + 'conv.'] = f'methods.{name}.connectors.0.0.'
        self.connector_map[prefix + 'bn.'] = f'methods.{name}.connectors.0.1.'

    def loss_KLDivergence(self, where, name, args, sconn, tconn, sides):
        if not self._no_conn(where, 'KLDivergence', sconn, tconn):
            return None
        if not self._extra(where, 'KLDivergence', args,
                           ('tau', 'reduction', 'loss_weight', 'teacher_detach')):
            return None
        if args.get('teacher_detach', True) is not True:
            self.unsupported.append(f'{where}: teacher_detach=False (mmkd\'s teacher is frozen)')
            return None
        weight = args.get('loss_weight', 1.0)
        red = args.get('reduction', 'batchmean')
        if red == 'mean':
            if not self.num_classes:
                self.unsupported.append(f'{where}: reduction=\'mean\' divides by the number '
                                        'of classes, unknown here (no head.num_classes)')
                return None
            self.notes.append(f'{where}: reduction=\'mean\' (KL / (N x {self.num_classes} '
                              f'classes)) -> loss_weight {weight} / {self.num_classes}')
            weight = weight / self.num_classes
        elif red != 'batchmean':
            self.unsupported.append(f'{where}: KLDivergence reduction={red!r} (mmkd: the mean '
                                    'over samples, MMRazor\'s \'batchmean\')')
            return None
        return dict(type='LogitKD', tau=float(args.get('tau', 1.0))), weight

    def loss_DKDLoss(self, where, name, args, sconn, tconn, sides):
        if not (self._no_conn(where, 'DKDLoss', sconn, tconn) and self._extra(
                where, 'DKDLoss', args, ('tau', 'alpha', 'beta', 'reduction', 'loss_weight'))):
            return None
        alpha, beta = float(args.get('alpha', 1.0)), float(args.get('beta', 1.0))
        weight = args.get('loss_weight', 1.0)
        red = args.get('reduction', 'batchmean')
        batch_size = (self.cfg.get('train_dataloader') or {}).get('batch_size')
        if red in ('mean', 'sum') and batch_size:
            # MMRazor's DKDLoss passes size_average=False to F.kl_div: torch's legacy
            # reduction then sums over the whole batch for 'mean' as for 'sum' (only
            # 'batchmean' is honoured), so its loss is batch_size times mmkd's.
            self.notes.append(f'{where}: reduction={red!r} (MMRazor\'s DKDLoss passes '
                              'size_average=False, so torch sums over the batch) -> loss_weight '
                              f'{weight} x batch size {batch_size}')
            weight = weight * batch_size
        elif red != 'batchmean':
            self.unsupported.append(f'{where}: DKDLoss reduction={red!r} (a sum over the batch '
                                    'in MMRazor; mmkd: the mean over samples; no '
                                    'train_dataloader.batch_size to rescale by)')
            return None
        return dict(type='DKD', alpha=alpha, beta=beta,
                    tau=float(args.get('tau', 1.0))), weight

    def loss_DISTLoss(self, where, name, args, sconn, tconn, sides):
        if not (self._no_conn(where, 'DISTLoss', sconn, tconn) and self._extra(
                where, 'DISTLoss', args, ('inter_loss_weight', 'intra_loss_weight', 'tau',
                                          'loss_weight', 'teacher_detach'))):
            return None
        return dict(type='DIST', tau=float(args.get('tau', 1.0)),
                    beta=float(args.get('inter_loss_weight', 1.0)),
                    gamma=float(args.get('intra_loss_weight', 1.0))), args.get('loss_weight', 1.0)

    def loss_ChannelWiseDivergence(self, where, name, args, sconn, tconn, sides):
        proj = self._conv_projector(where, 'ChannelWiseDivergence', name, sconn, tconn,
                                    ('always',))
        if proj is None or not self._extra(where, 'ChannelWiseDivergence', args,
                                           ('tau', 'loss_weight')):
            return None
        return dict(type='CWD', tau=float(args.get('tau', 1.0)),
                    projector=proj), args.get('loss_weight', 1.0)

    def loss_PKDLoss(self, where, name, args, sconn, tconn, sides):
        proj = self._conv_projector(where, 'PKDLoss', name, sconn, tconn, ('always',))
        if proj is None or not self._extra(where, 'PKDLoss', args, ('loss_weight',
                                                                    'resize_stu')):
            return None
        if args.get('resize_stu', True) is not True:
            self.unsupported.append(f'{where}: PKDLoss resize_stu=False (mmkd resizes the '
                                    'student to the teacher)')
            return None
        return dict(type='PKD', projector=proj), args.get('loss_weight', 1.0)

    def loss_ATLoss(self, where, name, args, sconn, tconn, sides):
        if not (self._no_conn(where, 'ATLoss', sconn, tconn)
                and self._extra(where, 'ATLoss', args, ('loss_weight',))):
            return None
        return dict(type='AT', p=2.0), args.get('loss_weight', 1.0)

    def loss_L2Loss(self, where, name, args, sconn, tconn, sides):
        if not self._extra(where, 'L2Loss', args, ('loss_weight', 'normalize', 'mult',
                                                   'div_element', 'dist')):
            return None
        if args.get('normalize', True) or args.get('dist', False) or not args.get(
                'div_element', False):
            self.unsupported.append(
                f'{where}: L2Loss(normalize={args.get("normalize", True)}, div_element='
                f'{args.get("div_element", False)}, dist={args.get("dist", False)}): only '
                'normalize=False, div_element=True, dist=False (the mean squared error) equals '
                'mmkd\'s FeatureMSE')
            return None
        proj = self._conv_projector(where, 'L2Loss', name, sconn, tconn, ('always', 'convreg'))
        if proj is None:
            return None
        return dict(type='FeatureMSE', projector=proj), args.get('loss_weight', 1.0)

    def loss_MGDLoss(self, where, name, args, sconn, tconn, sides):
        if tconn or len(sconn) != 1 or str(sconn[0][1].get('type')).split('.')[-1] != \
                'MGDConnector':
            self.unsupported.append(f'{where}: MGDLoss needs one MGDConnector on the student, '
                                    f'got {[c for c, _ in sconn + tconn]}')
            return None
        if not self._extra(where, 'MGDLoss', args, ('alpha_mgd',)):
            return None
        spec = sconn[0][1]
        # MMRazor's MGDConnector and mmkd's MGDGenerator: the same align / generation layers
        self.connector_map[f'distiller.connectors.{sconn[0][0]}.'] = \
            f'methods.{name}.connectors.0.'
        return dict(type='MGD', mask='channel' if spec.get('mask_on_channel') else 'spatial',
                    ratio=float(spec.get('lambda_mgd', 0.65)),
                    alpha=float(args.get('alpha_mgd', 2e-5))), 1.0

    def loss_ABLoss(self, where, name, args, sconn, tconn, sides):
        if tconn or len(sconn) > 1:
            self.unsupported.append(f'{where}: ABLoss takes one student connector only')
            return None
        if sconn:
            spec = sconn[0][1]
            if spec.get('act_cfg', dict(type='ReLU')) is not None or spec.get(
                    'kernel_size', 1) != 1:
                self.unsupported.append(f'{where}: connector {sconn[0][0]!r} is not AB\'s '
                                        'conv1x1 + BN')
                return None
        if not self._extra(where, 'ABLoss', args, ('loss_weight', 'margin')):
            return None
        if sconn:  # AB's connector (built where the shapes differ): conv + BN
            self._map_conv_bn(sconn[0][0], name)
        return dict(type='AB', margin=float(args.get('margin', 1.0)), level_weights=[1.0],
                    scale=0.003), args.get('loss_weight', 1.0)

    def loss_OFDLoss(self, where, name, args, sconn, tconn, sides):
        if not self._extra(where, 'OFDLoss', args, ('loss_weight', 'mul_factor')):
            return None
        if any(str(s.get('type')).split('.')[-1] != 'OFDTeacherConnector' for _, s in tconn):
            self.unsupported.append(f'{where}: OFD\'s teacher connector must be '
                                    'OFDTeacherConnector')
            return None
        tpoint, spoint = sides['teacher'][0], sides['student'][0]
        if '@' in tpoint or '[' in tpoint or '@' in spoint or '[' in spoint:
            self.unsupported.append(f'{where}: OFD needs BatchNorm outputs as record points')
            return None
        sides['teacher'][0], sides['student'][0] = f'{tpoint}@input', f'{spoint}@input'
        self.notes.append(f'{where}: OFD records the inputs of {spoint!r} / {tpoint!r} and '
                          'applies those BatchNorms itself (apply_bn), so an in-place ReLU '
                          'cannot change the pre-ReLU values')
        for c, _ in sconn:  # OFD's connector: conv1x1 (no bias) + BN, as MMRazor's
            self._map_conv_bn(c, name)
        weight = args.get('loss_weight', 1.0) / args.get('mul_factor', 1000.0)
        return dict(type='OFD', teacher_bns=[tpoint], student_bns=[spoint], apply_bn=True,
                    level_weights=[1.0]), weight

    def loss_CRDLoss(self, where, name, args, sconn, tconn, sides):
        if not self._extra(where, 'CRDLoss', args, ('loss_weight', 'temperature', 'neg_num',
                                                    'sample_n', 'dim_out', 'momentum', 'eps')):
            return None
        self.notes.append(f'{where}: CRD\'s embedding heads replace the CRDConnectors '
                          f'{[c for c, _ in sconn + tconn]} (no weights carried); mmkd reads '
                          'sample_idx from the data samples, so CRDDataset is not needed')
        return dict(type='CRD', num_samples=int(args.get('sample_n', 50000)),
                    feat_dim=int(args.get('dim_out', 128)),
                    nce_k=int(args.get('neg_num', 16384)),
                    temperature=float(args.get('temperature', 0.07)),
                    momentum=float(args.get('momentum', 0.5)),
                    eps=float(args.get('eps', 1e-7))), args.get('loss_weight', 1.0)

    def loss_FTLoss(self, where, name, args, sconn, tconn, sides):
        if not self._extra(where, 'FTLoss', args, ('loss_weight',)):
            return None
        self.notes.append(f'{where}: FT\'s paraphraser/translator replace the connectors '
                          f'{[c for c, _ in sconn + tconn]}; MMRazor trains the paraphraser in '
                          'a separate config: here paraphraser_stage=0 (load a trained '
                          'paraphraser with init_cfg, or set paraphraser_stage)')
        return dict(type='FT', factor='flatten', paraphraser_stage=0,
                    factor_weight=float(args.get('loss_weight', 1.0))), 1.0

    def _rkd(self, where, args, ltype, distance):
        if not (self._no_conn(where, ltype, [], []) and self._extra(
                where, ltype, args, ('loss_weight', 'with_l2_norm'))):
            return None
        if args.get('with_l2_norm', True):
            self.unsupported.append(f'{where}: {ltype} with_l2_norm=True (its default) '
                                    'L2-normalises each embedding first; mmkd\'s RKD has no '
                                    'such option (with_l2_norm=False converts)')
            return None
        w = float(args.get('loss_weight', 25.0 if distance else 50.0))
        return dict(type='RKD', distance_weight=w if distance else 0.0,
                    angle_weight=0.0 if distance else w), 1.0

    def loss_DistanceWiseRKD(self, where, name, args, sconn, tconn, sides):
        return self._rkd(where, args, 'DistanceWiseRKD', True) if self._no_conn(
            where, 'DistanceWiseRKD', sconn, tconn) else None

    def loss_AngleWiseRKD(self, where, name, args, sconn, tconn, sides):
        return self._rkd(where, args, 'AngleWiseRKD', False) if self._no_conn(
            where, 'AngleWiseRKD', sconn, tconn) else None

    def loss_WSLD(self, where, name, args, sconn, tconn, sides):
        if not (self._no_conn(where, 'WSLD', sconn, tconn) and self._extra(
                where, 'WSLD', args, ('tau', 'loss_weight', 'num_classes'))):
            return None
        return dict(type='WSLD', tau=float(args.get('tau', 1.0))), args.get('loss_weight', 1.0)

    # whole config ----------------------------------------------------------------------
    def run(self):
        model = self.cfg.get('model')
        if not isinstance(model, dict):
            raise ConversionError(f'{self.src}: no model dict')
        mtype = str(model.get('type', '')).split('.')[-1]
        if mtype in REFUSED_DISTILLERS:
            raise ConversionError(f'{self.src}: distiller {mtype!r}: '
                                  f'{REFUSED_DISTILLERS[mtype]}')
        if mtype not in SUPPORTED_DISTILLERS:
            raise ConversionError(f'{self.src}: model type {mtype!r} is not an MMRazor '
                                  f'distiller mmkd converts ({list(SUPPORTED_DISTILLERS)}; '
                                  f'refused: {list(REFUSED_DISTILLERS)})')
        arch, teacher = model.get('architecture') or {}, model.get('teacher') or {}
        lines = [f'# Converted from the MMRazor config {self.src}',
                 '# by tools/model_converters/mmrazor2mmkd.py.']
        if 'cfg_path' in arch:
            student_path = _rename(self.resolve(arch['cfg_path']))
            try:
                from mmkd.distillers import load_model_config
                mcfg, _ = load_model_config(student_path)
                self.num_classes = (mcfg.get('head') or {}).get('num_classes')
            except Exception as e:
                raise ConversionError(f'{self.src}: the student config {student_path!r} does '
                                      f'not resolve: {e}') from e
            # The MMRazor config's own bases (data, schedule, runtime) stay the bases and the
            # student is named by its config, as MMRazor's architecture.cfg_path does; a config
            # without bases of its own inherits the student's config instead.
            base = self.own_bases() if self.bases else []
            if base:
                student = repr(student_path)
            else:
                base, student = student_path, '{{_base_.model}}'
        else:
            base = None
            student = _fmt(dict(arch), 4)
            self.num_classes = (arch.get('head') or {}).get('num_classes')
            if self.bases:
                base = [_rename(b) for b in self.bases]
        if 'cfg_path' not in teacher:
            self.unsupported.append('teacher: given as a model dict without cfg_path '
                                    '(write it as teacher=dict(model=..., checkpoint=...))')
        if model.get('init_cfg'):
            self.unsupported.append(
                f'model.init_cfg={model["init_cfg"]}: loads the whole distiller (teacher '
                'included) from an MMRazor checkpoint; convert it with --checkpoint and give '
                'the teacher a checkpoint')
        if not model.get('teacher_ckpt'):
            self.unsupported.append('teacher_ckpt: missing (mmkd loads the teacher from a '
                                    'checkpoint)')
        dist = model.get('distiller') or {}
        if str(dist.get('type', 'ConfigurableDistiller')).split('.')[-1] not in (
                'ConfigurableDistiller', 'OFDDistiller'):
            self.unsupported.append(f'distiller: type {dist.get("type")!r}')
        if model.get('calculate_student_loss', True) is False:
            self.unsupported.append('calculate_student_loss=False: mmkd always adds the '
                                    'student\'s task losses')
        if model.get('student_trainable', True) is False:
            self.unsupported.append('student_trainable=False: mmkd always trains the student')
        blocks, left_out = {}, []
        mappings = dist.get('loss_forward_mappings') or {}
        for lname, loss in (dist.get('distill_losses') or {}).items():
            if lname not in mappings:
                self.notes.append(f'distill_losses.{lname}: no loss_forward_mappings entry, '
                                  'so MMRazor never computes it; left out')
                continue
            before = len(self.unsupported)
            bname = block_name(lname, blocks)
            b = self.block(lname, bname, loss, mappings.get(lname, {}), dist)
            if b is None:
                if len(self.unsupported) == before:
                    self.unsupported.append(f'distill_losses.{lname}: not converted')
                left_out.append(lname)
            else:
                blocks[bname] = b

        settings = self.own_settings()

        def wrap(items):
            return [line for item in items for line in textwrap.wrap(
                item, 96, initial_indent='#   ', subsequent_indent='#     ')]
        if self.notes:
            lines += ['#', '# Notes:'] + wrap(self.notes)
        if self.unsupported:
            lines += ['#', '# NOT converted (left out of this partial config):'] + wrap(
                self.unsupported)
        if isinstance(base, list) and len(base) > 1:
            lines += ['', '_base_ = ['] + [f'    {b!r},' for b in base] + [']']
        elif base is not None:
            lines += ['', f'_base_ = {base!r}']
        lines += ["custom_imports = dict(imports=['mmkd'], allow_failed_imports=False)", '']
        if mtype == 'FpnTeacherDistill':
            lines.append('# FpnTeacherDistill: mmkd\'s teacher already stops after its deepest '
                         'record point (stop_teacher_early).')
        tdict = dict(config=_rename(self.resolve(teacher.get('cfg_path', ''))),
                     checkpoint=model.get('teacher_ckpt'))
        # `_delete_` replaces a base's model; with no model in the bases it would stay in the
        # dict (MMEngine only consumes it when merging) and reach the Distiller.
        delete = ['    _delete_=True,'] if self.bases_define_model(base) else []
        body = delete + ["    type='mmkd.Distiller',", f'    student={student},',
                f'    teacher={_fmt(tdict, 4)},', '    blocks=dict(']
        for bname, b in blocks.items():
            body.append(f'        {bname}={_fmt(b, 8)},')
        body.append('    ))')
        lines += ['model = dict('] + body + settings
        return '\n'.join(lines) + '\n'

    @staticmethod
    def bases_define_model(base) -> bool:
        """Whether the written ``_base_`` (a path or a list) defines ``model``."""
        from mmengine.config import Config

        from mmkd.distillers import resolve_config_path
        for b in ([base] if isinstance(base, str) else list(base or [])):
            try:
                if 'model' in Config.fromfile(resolve_config_path(b)):
                    return True
            except Exception:  # unreadable here: keep _delete_, the safe default
                return True
        return False

    def own_bases(self) -> List[str]:
        """The MMRazor file's own ``_base_`` entries for the mmkd config: package paths with
        their scope renamed, local files made absolute. A local base that is itself an MMRazor
        distillation config is replaced by its own bases (recursively), and its settings are
        carried like the file's own; a local base that uses mmcls scopes is reported (it would
        need converting too)."""
        return self._bases_of(self.src, self.bases, set())

    def _bases_of(self, src: str, bases, seen) -> List[str]:
        out = []
        for b in bases:
            if '::' in b:
                out.append(_rename(self.resolve(b)) if b.startswith('mmrazor::') else _rename(b))
                continue
            path = osp.normpath(osp.join(osp.dirname(osp.abspath(src)), b))
            if path in seen:
                continue
            seen.add(path)
            with open(path, encoding='utf-8') as f:
                text = f.read()
            if re.search(r"""(_scope_\s*=\s*|type\s*=\s*)['"]mmrazor""", text):
                inner, keys = _bases_and_keys(path)
                out += self._bases_of(path, inner, seen)
                self.own_keys = [k for k in keys if k not in self.own_keys] + self.own_keys
                continue
            if _rename(text) != text:
                self.unsupported.append(f'_base_ {b!r}: a local file with mmcls scopes; rename '
                                        'them in it (mmcls:: -> mmpretrain::) and convert again')
            out.append(path)
        return out

    def own_settings(self) -> List[str]:
        """The MMRazor file's own top-level settings besides ``model`` (schedule, data,
        optimizer overrides...), as merged with its bases; those naming MMRazor's own classes
        (its validation loops) are left out with a note."""
        lines = []
        for key in self.own_keys:
            if key in ('model', 'custom_imports') or key not in self.cfg:
                continue
            value = self.cfg[key]
            value = value.to_dict() if hasattr(value, 'to_dict') else value
            if re.search(r"'(type|_scope_)': 'mmrazor[.']", repr(value)):
                self.notes.append(f'{key}: names an MMRazor class ({value!r:.80}); left out, '
                                  'the base config\'s own setting applies')
                continue
            lines += ['', f'{key} = {_fmt(value, 0)}']
        return lines


def convert_config(path: str, allow_partial: bool = False) -> ConversionResult:
    """Convert the MMRazor distillation config ``path`` (see the module docstring)."""
    cfg, bases, own_keys = _load_mmrazor_config(path)
    conv = _Converter(cfg, path, bases, own_keys)
    text = conv.run()
    if conv.unsupported and not allow_partial:
        raise ConversionError(f'{path}: cannot convert:\n  ' + '\n  '.join(conv.unsupported))
    return ConversionResult(text, conv.unsupported, conv.notes, conv.connector_map)
