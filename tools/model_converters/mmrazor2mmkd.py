"""Convert an MMRazor 1.x distillation config (or checkpoint) for mmkd.

    python tools/model_converters/mmrazor2mmkd.py MMRAZOR_CONFIG [-o OUT] [--partial]
    python tools/model_converters/mmrazor2mmkd.py --checkpoint IN OUT [--config MMRAZOR_CONFIG]
        [--student-only]

The first form prints the mmkd config (and writes it to OUT, atomically). Anything it cannot
express is named and the tool exits 1, unless ``--partial`` writes the config without those
blocks (listed in a comment at its top). The config is read as any config you name
(``Config.fromfile``); nothing from a checkpoint is ever executed.

The second form converts an MMRazor distillation checkpoint (loaded with mmkd's safe loader):
the student (``architecture.*``) and, with ``--config``, the connectors that became mmkd
method modules; ``--student-only`` writes a plain student its base config loads. Keys it
cannot place are listed.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', nargs='?', help='the MMRazor distillation config to convert')
    parser.add_argument('-o', '--out', default=None, help='write the mmkd config here')
    parser.add_argument('--partial', action='store_true',
                        help='write the config without the parts mmkd cannot express '
                        '(listed in a comment) instead of failing')
    parser.add_argument('--checkpoint', nargs=2, metavar=('IN', 'OUT'), default=None,
                        help='convert an MMRazor distillation checkpoint instead')
    parser.add_argument('--config', dest='mmrazor_config', default=None,
                        help='with --checkpoint: the MMRazor config it was trained with '
                        '(places the connectors\' weights)')
    parser.add_argument('--student-only', action='store_true',
                        help='with --checkpoint: write only the student, under the plain '
                        'model\'s key names')
    parser.add_argument('--connector-map', action='append', default=[], metavar='OLD=NEW',
                        help='with --checkpoint: place the keys of connector OLD (its name, '
                        'or an MMRazor key prefix: distiller.connectors.loss_s4_sfeat.) under '
                        'NEW (e.g. methods.s4.connectors.0.); repeatable; added to what '
                        '--config gives')
    parser.add_argument('--allow-unplaced', action='store_true',
                        help='with --checkpoint: write even when some keys cannot be placed '
                        '(they are listed)')
    args = parser.parse_args(argv)
    if (args.config is None) == (args.checkpoint is None):
        parser.error('give either CONFIG or --checkpoint IN OUT')
    if args.checkpoint is None and (args.student_only or args.mmrazor_config
                                    or args.connector_map or args.allow_unplaced):
        parser.error('--student-only, --config, --connector-map and --allow-unplaced go with '
                     '--checkpoint')
    for item in args.connector_map:
        if '=' not in item:
            parser.error(f'--connector-map {item!r}: expected OLD=NEW')
    return args


def convert_checkpoint_cli(args) -> int:
    from mmkd.converters.mmrazor_checkpoint import convert_checkpoint
    connector_map = {}
    src, dst = args.checkpoint
    try:
        if args.mmrazor_config:
            from mmkd.converters import convert_config
            connector_map.update(convert_config(args.mmrazor_config,
                                                allow_partial=True).connector_map)
        connector_map.update(item.split('=', 1) for item in args.connector_map)
        result = convert_checkpoint(src, dst, student_only=args.student_only,
                                    connector_map=connector_map or None,
                                    allow_unplaced=args.allow_unplaced)
    except (ValueError, OSError, KeyError) as e:  # ConversionError is a ValueError
        print(f'mmrazor2mmkd: {e}', file=sys.stderr)
        return 1
    placed, unplaced = result.get('placed', {}), result.get('unplaced', [])
    print(f'{src} -> {dst}: {len(placed)} keys placed')
    if unplaced:
        print(f'{len(unplaced)} keys not placed:\n  ' + '\n  '.join(unplaced))
        return 0 if args.allow_unplaced else 1
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    # Imported after parsing, so that --help and usage errors answer at once.
    if args.checkpoint is not None:
        return convert_checkpoint_cli(args)
    from mmkd.converters import ConversionError, convert_config
    from mmkd.utils.atomic_io import atomic_write
    try:
        result = convert_config(args.config, allow_partial=args.partial)
    except (ConversionError, OSError) as e:
        print(f'mmrazor2mmkd: {e}', file=sys.stderr)
        print('(--partial writes the config without these parts)', file=sys.stderr)
        return 1
    print(result.text, end='')
    if args.out:
        atomic_write(result.text, args.out, mode='w', encoding='utf-8')
        print(f'# written to {args.out}', file=sys.stderr)
    if result.unsupported:
        print('mmrazor2mmkd: left out (partial config):\n  ' + '\n  '.join(result.unsupported),
              file=sys.stderr)
    return 0


if __name__ == '__main__':
    sys.exit(main())
