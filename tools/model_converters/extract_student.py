"""Write a student-only checkpoint from a distillation checkpoint.

    python tools/model_converters/extract_student.py work_dirs/x/epoch_12.pth student.pth

The result holds the student's weights under the plain model's key names (``backbone.*``,
``neck.*`` ...), so the student's own base config loads it with ``load_from`` or
``tools/test.py BASE_CONFIG student.pth``. Teacher, methods, optimizer and scheduler states are
dropped; ``meta`` is kept (minus the distillation config and the run record).

A student that carries inserted layers (``model.student_inserts``, e.g. letKD's KD layer) needs
them to predict, so the student's base config no longer builds it: the tool then also writes a
config beside the weights (``--config-out``, default ``DST`` with ``.py``), the distillation
config of the run with its ``model`` replaced by ``mmkd.StudentWithInserts(model=<student>,
inserts=<student_inserts>)``: ``tools/test.py DST.py DST`` gives the distilled student's
predictions. ``--config-out`` writes that config for any student.

No text from the checkpoint is ever executed: the config is made from the plain-data run record
``tools/train.py`` stores in every checkpoint (``meta['mmkd']``, see
:mod:`mmkd.hooks.run_record`) and written as data-only Python. For a checkpoint without one
(another tool's, an older mmkd's), give the distillation config it was trained with:
``--config CONFIG`` (a file you name, read as any config).
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src', help='checkpoint written while training a distiller (a path, '
                        'or any URL or scheme MMEngine loads: http(s)://, s3:// ...)')
    parser.add_argument('dst', help='where to write the student-only checkpoint')
    parser.add_argument('--config-out', default=None,
                        help='write the config that builds the exported student here '
                        '(default: DST with .py, when the student has inserted layers)')
    parser.add_argument('--config', default=None,
                        help='the distillation config SRC was trained with, for a checkpoint '
                        'without mmkd\'s run record (used only to write the student config)')
    return parser.parse_args()


def main():
    args = parse_args()
    # Imported after parsing, so that --help and usage errors answer at once (torch and the
    # OpenMMLab packages take seconds to import).
    import torch
    from mmengine.runner.checkpoint import _load_checkpoint

    import mmkd  # noqa: F401  (makes MMEngine's checkpoint loading safe, for every scheme)
    from mmkd.distillers.inserts import INSERTS_ATTR
    from mmkd.hooks.run_record import META_KEY, dump_data_config
    from mmkd.utils import extract_student_state_dict
    ckpt = _load_checkpoint(args.src, map_location='cpu')
    if not isinstance(ckpt, dict):
        sys.exit(f'{args.src} holds a {type(ckpt).__name__}, not a distillation checkpoint.')
    state = extract_student_state_dict(ckpt.get('state_dict', ckpt))
    meta = dict(ckpt.get('meta') or {})
    meta.pop('cfg', None)  # MMEngine's config text: never executed, not carried over
    record = meta.pop(META_KEY, None)
    meta['mmkd_source_checkpoint'] = args.src if '://' in args.src else osp.abspath(args.src)
    inserted = any(k.startswith(f'{INSERTS_ATTR}.') for k in state)
    config_out = args.config_out or (osp.splitext(args.dst)[0] + '.py' if inserted else None)
    if config_out:
        config = student_config(record, args.config, args.src)
        dump_data_config(config, config_out, header=f'# The student exported from {args.src} '
                         'by tools/model_converters/extract_student.py.\n')
    torch.save(dict(state_dict=state, meta=meta), args.dst)
    print(f'Wrote {len(state)} student tensors to {args.dst}' +
          (f' and its config to {config_out}' if config_out else ''))


def student_config(record, config_path, src) -> dict:
    """The exported student's config as data: from the checkpoint's run record, else from the
    distillation config the user names with ``--config``."""
    from mmkd.hooks.run_record import META_KEY, student_config_from_record, to_data
    from mmkd.utils import is_distiller_config
    if config_path is not None:
        from mmkd.utils.tool_config import load_tool_config
        cfg = load_tool_config(config_path)
        if not is_distiller_config(cfg.model):
            sys.exit(f'--config {config_path}: not a distillation config (its model is not an '
                     'mmkd distiller).')
        from mmkd.distillers import load_model_config
        student, scope = load_model_config(cfg.model.student)
        record = dict(config=to_data(cfg.to_dict()), student=dict(
            model=to_data(student), inserts=to_data(cfg.model.get('student_inserts')),
            scope=cfg.model.get('student_scope') or scope or cfg.get('default_scope')))
    elif not (isinstance(record, dict) and isinstance(record.get('config'), dict)
              and isinstance(record.get('student'), dict)):
        sys.exit(f'{src} holds no mmkd run record (meta["{META_KEY}"]; checkpoints of '
                 'tools/train.py have one), so the student config cannot be written from it. '
                 'Give the distillation config it was trained with: --config CONFIG.')
    return student_config_from_record(record)


if __name__ == '__main__':
    main()
