"""Write docs/methods/parity.md: mmkd's methods against MMRazor, mdistiller, RepDistiller and
torchdistill, one row per method any of them ships.

    python tools/docs/gen_parity_table.py            # (re)write the page
    python tools/docs/gen_parity_table.py --check    # exit 1 if it is stale or inconsistent

The mmkd column comes from the registry: a row names the registered class (or the option)
that implements it, and every method class registered in ``mmkd.registry.MODELS`` must have
a row, so a new method cannot be registered without its row, and a row cannot name a method
that is not registered (the tool lists both problems and writes nothing; ``tests/test_docs.py``
fails on them). The other columns are :data:`ANCHORS`, read from each project's sources at the
commit :data:`SOURCES` names: the file or class that implements the method there.
"""
import argparse
import os.path as osp
import sys
from typing import Dict, List, NamedTuple, Optional

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
PAGE = osp.join('docs', 'methods', 'parity.md')
COMMAND = 'python tools/docs/gen_parity_table.py'

#: The projects compared, where their implementations live, and the commit read.
SOURCES = {
    'MMRazor': ('open-mmlab/mmrazor', 'mmrazor/models/losses/', '0fe347f (main)'),
    'mdistiller': ('megvii-research/mdistiller', 'mdistiller/distillers/', 'e8c5bb3'),
    'RepDistiller': ('HobbitLong/RepDistiller', 'distiller_zoo/ (CRD: crd/)', '1e2f816'),
    'torchdistill': ('yoshitomo-matsubara/torchdistill', 'torchdistill/losses/ (class)',
                     '3e4373c'),
}


class Row(NamedTuple):
    method: str                 # the method, as papers name it
    mmkd: Optional[str]         # the registered class, or None (not yet in mmkd)
    anchors: Dict[str, str]     # project -> its file or class
    option: str = ''            # mmkd: implemented as an option of another method, not a class


#: One row per method. ``mmkd`` is checked against the registry.
ROWS: List[Row] = [
    Row('KD (Hinton et al., 2015)', 'LogitKD', {
        'MMRazor': 'kl_divergence.py', 'mdistiller': 'KD.py', 'RepDistiller': 'KD.py',
        'torchdistill': 'KDLoss'}),
    Row('FitNet (Romero et al., 2015)', 'FeatureMSE', {
        'MMRazor': 'l2_loss.py', 'mdistiller': 'FitNet.py', 'RepDistiller': 'FitNet.py'}),
    Row('AT (Zagoruyko & Komodakis, 2017)', 'AT', {
        'MMRazor': 'at_loss.py', 'mdistiller': 'AT.py', 'RepDistiller': 'AT.py',
        'torchdistill': 'ATLoss'}),
    Row('DKD (Zhao et al., 2022)', 'DKD', {'MMRazor': 'decoupled_kd.py', 'mdistiller': 'DKD.py'}),
    Row('RLD (arXiv 2408.07703)', 'RLD', {}),
    Row('logit standardisation (Sun et al., 2024)', None, {'torchdistill': 'LogitStdKDLoss'},
        option='`logit_standardization=True` of `LogitKD`, `DKD`, `RLD`'),
    Row('DIST (Huang et al., 2022)', 'DIST', {
        'MMRazor': 'dist_loss.py', 'torchdistill': 'DISTLoss'}),
    Row('DIST+', None, {'torchdistill': 'DISTPlusLoss'}),
    Row('CWD (Shu et al., 2021)', 'CWD', {'MMRazor': 'cwd.py'}),
    Row('PKD (Cao et al., 2022)', 'PKD', {'MMRazor': 'pkd_loss.py'}),
    Row('LD (Zheng et al., 2022)', 'LD', {}),
    Row('CrossKD (Wang et al., 2024)', 'CrossKD', {}),
    Row('MGD (Yang et al., 2022)', 'MGD', {'MMRazor': 'mgd_loss.py'}),
    Row('RKD (Park et al., 2019)', 'RKD', {
        'MMRazor': 'relational_kd.py', 'mdistiller': 'RKD.py', 'RepDistiller': 'RKD.py',
        'torchdistill': 'RKDLoss'}),
    Row('SP (Tung & Mori, 2019)', 'SP', {
        'mdistiller': 'SP.py', 'RepDistiller': 'SP.py', 'torchdistill': 'SPKDLoss'}),
    Row('PKT (Passalis & Tefas, 2018)', 'PKT', {
        'mdistiller': 'PKT.py', 'RepDistiller': 'PKT.py', 'torchdistill': 'PKTLoss'}),
    Row('DiffKD (Huang et al., 2023)', 'DiffKD', {}),
    Row('VkD (Miles et al., 2024)', 'VkD', {}),
    Row('AFD (Ji et al., 2021)', 'AFD', {}),
    Row('RTK', 'RTK', {}),
    Row('letKD, one level', 'LetKD', {}),
    Row('letKD, sub-class templates', 'LetKDSubclass', {}),
    Row('several teachers, one block (ensemble KD)', 'EnsembleKD', {}),
    Row('RKIQT quality KD (Li et al., 2024)', 'QualityKD', {}),
    Row('CRD (Tian et al., 2020)', 'CRD', {
        'MMRazor': 'crd_loss.py', 'mdistiller': 'CRD.py', 'RepDistiller': 'crd/criterion.py',
        'torchdistill': 'CRDLoss'}),
    Row('ReviewKD (Chen et al., 2021)', 'ReviewKD', {
        'mdistiller': 'ReviewKD.py', 'torchdistill': 'HierarchicalContextLoss'}),
    Row('OFD (Heo et al., 2019)', 'OFD', {'MMRazor': 'ofd_loss.py', 'mdistiller': 'OFD.py'}),
    Row('VID (Ahn et al., 2019)', 'VID', {
        'mdistiller': 'VID.py', 'RepDistiller': 'VID.py', 'torchdistill': 'VIDLoss'}),
    Row('NST (Huang & Wang, 2017)', 'NST', {'mdistiller': 'NST.py', 'RepDistiller': 'NST.py'}),
    Row('KDSVD (Lee et al., 2018)', 'KDSVD', {'mdistiller': 'KDSVD.py',
                                           'RepDistiller': 'KDSVD.py'}),
    Row('FSP (Yim et al., 2017)', 'FSP', {'RepDistiller': 'FSP.py', 'torchdistill': 'FSPLoss'}),
    Row('CC (Peng et al., 2019)', 'CC', {'RepDistiller': 'CC.py', 'torchdistill': 'CCKDLoss'}),
    Row('AB (Heo et al., 2019)', 'AB', {
        'MMRazor': 'ab_loss.py', 'RepDistiller': 'AB.py', 'torchdistill': 'AltActTransferLoss'}),
    Row('FT, factor transfer (Kim et al., 2018)', 'FT', {
        'MMRazor': 'factor_transfer_loss.py', 'RepDistiller': 'FT.py', 'torchdistill': 'FTLoss'}),
    Row('WSLD (Zhou et al., 2021)', 'WSLD', {'MMRazor': 'weighted_soft_label_distillation.py'}),
    Row('SRRL, softmax regression representation (Yang et al., 2021)', 'SRRL', {}),
    Row('SRD, a simple recipe (Miles & Mikolajczyk, 2024)', None, {'torchdistill': 'SRDLoss'}),
    Row('MLKD (Jin et al., 2023)', 'MLKD', {}),
    Row('FGD (Yang et al., 2022)', 'FGD', {}),
    Row('FBKD (Zhang & Ma, 2021)', 'FBKD', {'MMRazor': 'fbkd_loss.py'}),
    Row('DAFL, data-free (Chen et al., 2019)', 'DAFLGeneratorLoss', {'MMRazor': 'dafl_loss.py'}),
    Row('DFAD, data-free adversarial (Fang et al., 2019)', 'LogitL1', {'MMRazor': 'l1_loss.py'}),
    Row('ZSKT, zero-shot (Micaelli & Storkey, 2019)', 'ZSKTKL', {'MMRazor': 'kl_divergence.py'}),
    Row('DFND, data-free (Chen et al., 2021)', None, {'MMRazor': 'dfnd_loss.py'}),
    Row('BYOT, self-distillation (Zhang et al., 2019)', 'BYOT',
        {'MMRazor': 'BYOTDistiller + BYOTConnector (no loss file)'}),
    Row('SSKD (Xu et al., 2020)', None, {'torchdistill': 'SSKDLoss, AuxSSKDLoss'}),
    Row('PAD (Zhang et al., 2020)', None, {'torchdistill': 'PADL2Loss'}),
    Row('KTAAD (He et al., 2019)', None, {'torchdistill': 'KTALoss, AffinityLoss'}),
]


def registered_methods() -> Dict[str, type]:
    """Every mmkd distillation method class in the registry, by name."""
    sys.path.insert(0, REPO)
    import mmkd  # noqa: F401  (registers the methods)
    from mmkd.methods import BaseDistillMethod
    from mmkd.registry import MODELS
    return {name: cls for name, cls in MODELS.module_dict.items()
            if isinstance(cls, type) and issubclass(cls, BaseDistillMethod)
            and cls.__module__.startswith('mmkd.')}


def problems(rows: List[Row], methods: Dict[str, type]) -> List[str]:
    """Registered methods without a row, rows naming unregistered ones, unknown projects."""
    named = [r.mmkd for r in rows if r.mmkd]
    out = [f'{name} is registered but has no row in ROWS of {osp.basename(__file__)}'
           for name in sorted(methods) if name not in named]
    out += [f'row {r.method!r} names {r.mmkd}, which is not a registered method'
            for r in rows if r.mmkd and r.mmkd not in methods]
    out += [f'row {r.method!r} names the unknown project {p!r} (known: {sorted(SOURCES)})'
            for r in rows for p in r.anchors if p not in SOURCES]
    out += [f'{name} has two rows' for name in sorted(set(named)) if named.count(name) > 1]
    return out


def render(rows: List[Row]) -> str:
    projects = list(SOURCES)
    lines = [
        '# mmkd against the other KD toolboxes',
        '',
        f'Generated by `{COMMAND}` (do not edit): the mmkd column from the',
        'registry, the others from each project\'s sources at the commit below (the file or class',
        'implementing the method there). The methods mmkd lacks (DFND, SSKD, PAD, ...) are',
        'planned.',
        '',
        '| project | repository | where | commit read |',
        '|---|---|---|---|',
        *[f'| {p} | {repo} | `{where}` | {commit} |' for p, (repo, where, commit) in
          SOURCES.items()],
        '',
        '| method | mmkd | ' + ' | '.join(projects) + ' |',
        '|---|---|' + '---|' * len(projects),
    ]
    for r in rows:
        ours = f'`{r.mmkd}`' if r.mmkd else (r.option or '—')
        cells = [f'`{r.anchors[p]}`' if p in r.anchors else '—' for p in projects]
        lines.append(f'| {r.method} | {ours} | ' + ' | '.join(cells) + ' |')
    have = sum(1 for r in rows if r.mmkd or r.option)
    lines += ['', f'{have} of {len(rows)} methods are in mmkd; '
              f'{sum(1 for r in rows if not (r.mmkd or r.option))} are not yet.', '']
    return '\n'.join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description='Write docs/methods/parity.md, mmkd\'s methods against MMRazor, '
                    'mdistiller, RepDistiller and torchdistill; refuse when a registered '
                    'method has no row or a row names an unregistered one.')
    parser.add_argument('--check', action='store_true',
                        help='write nothing; exit 1 if the page is stale or inconsistent')
    parser.add_argument('--out', default=osp.join(REPO, PAGE),
                        help=f'the page to write or check (default: {PAGE})')
    args = parser.parse_args(argv)
    found = problems(ROWS, registered_methods())
    if found:
        print('gen_parity_table: ' + '\n  '.join(['nothing written:', *found]))
        return 1
    text = render(ROWS)
    if args.check:
        current = open(args.out, encoding='utf-8').read() if osp.exists(args.out) else None
        if current != text:
            print(f'{PAGE} is stale: run `{COMMAND}`.')
            return 1
        print(f'{PAGE} is up to date.')
        return 0
    with open(args.out, 'w', encoding='utf-8') as f:
        f.write(text)
    print(f'wrote {PAGE}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
