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

Training-only branches (inserts with ``mode='branch'``, e.g. BYOT's auxiliary exits) are
dropped: neither their weights nor their entries are written, so a student whose inserts are
all branches is exported as the plain student (no config needed; its base config loads it
strictly and predicts as the distiller did). Which inserts are branches is read from the run
record (or ``--config``).

A teacher trained in the run (online / mutual learning, ``trainable=True``) is exported alone
with ``--model NAME``: its weights under its own model's key names, so its own config loads
them (with ``--config-out``, the config is written from the run record too).

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
    parser.add_argument('--model', default='student', metavar='NAME',
                        help='what to export: the student (default), or a teacher trained in '
                        'the run (trainable=True) by name')
    return parser.parse_args()


def main():
    args = parse_args()
    # Imported after parsing, so that --help and usage errors answer at once (torch and the
    # OpenMMLab packages take seconds to import).
    import torch
    from mmengine.runner.checkpoint import _load_checkpoint

    import mmkd  # noqa: F401  (makes MMEngine's checkpoint loading safe, for every scheme)
    from mmkd.distillers.inserts import INSERTS_ATTR, branch_names
    from mmkd.hooks.run_record import META_KEY, dump_data_config, student_config_from_record
    from mmkd.utils import extract_student_state_dict
    ckpt = _load_checkpoint(args.src, map_location='cpu')
    if not isinstance(ckpt, dict):
        sys.exit(f'{args.src} holds a {type(ckpt).__name__}, not a distillation checkpoint.')
    if args.model != 'student':
        return export_trainable_teacher(args, ckpt)
    state = extract_student_state_dict(ckpt.get('state_dict', ckpt))
    meta = dict(ckpt.get('meta') or {})
    meta.pop('cfg', None)  # MMEngine's config text: never executed, not carried over
    record = meta.pop(META_KEY, None)
    meta['mmkd_source_checkpoint'] = args.src if '://' in args.src else osp.abspath(args.src)
    inserted = any(k.startswith(f'{INSERTS_ATTR}.') for k in state)
    record = student_record(record, args.config, args.src) if (
        inserted or args.config_out or args.config) else None
    # Training-only branches (BYOT's exits): neither their weights nor their entries.
    branches = branch_names(record['student'].get('inserts')) if record else []
    dropped = [k for k in state if any(k.startswith(f'{INSERTS_ATTR}.{b}.') for b in branches)]
    for key in dropped:
        del state[key]
    if dropped:
        meta['mmkd_dropped_branches'] = branches
    inserted = any(k.startswith(f'{INSERTS_ATTR}.') for k in state)
    config_out = args.config_out or (osp.splitext(args.dst)[0] + '.py' if inserted else None)
    if config_out:
        config = student_config_from_record(without_branch_record(record))
        dump_data_config(config, config_out, header=f'# The student exported from {args.src} '
                         'by tools/model_converters/extract_student.py.\n')
    torch.save(dict(state_dict=state, meta=meta), args.dst)
    print(f'Wrote {len(state)} student tensors to {args.dst}' +
          (f' and its config to {config_out}' if config_out else '') +
          (f' (left out the training-only branches {branches}: {len(dropped)} tensors)'
           if dropped else ''))


def export_trainable_teacher(args, ckpt):
    """``--model NAME``: the weights of the trainable teacher NAME (``trainable_teachers.NAME.*``
    in the distiller's state dict) under its own model's key names."""
    import torch
    from mmkd.hooks.run_record import META_KEY, dump_data_config, student_config_from_record
    state = ckpt.get('state_dict', ckpt)
    prefix = f'trainable_teachers.{args.model}.'
    found = sorted({k.split('.')[1] for k in state if k.startswith('trainable_teachers.')})
    own = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not own:
        sys.exit(f'--model {args.model}: {args.src} holds no teacher of that name trained in '
                 f'the run; it holds {found or "none"} (and the student: --model student).')
    meta = dict(ckpt.get('meta') or {})
    meta.pop('cfg', None)
    record = meta.pop(META_KEY, None)
    meta['mmkd_source_checkpoint'] = args.src if '://' in args.src else osp.abspath(args.src)
    meta['mmkd_exported_model'] = args.model
    if args.config_out:
        teacher = ((record or {}).get('trainable_teachers') or {}).get(args.model)
        if not isinstance(teacher, dict) or not isinstance(record.get('config'), dict):
            sys.exit(f'--config-out: {args.src} has no run record of the teacher '
                     f'{args.model!r} (meta["{META_KEY}"]["trainable_teachers"]); its config '
                     'is the one in the distillation config (model.teachers.'
                     f'{args.model}).')
        config = student_config_from_record(dict(record, student=dict(
            model=teacher['model'], scope=teacher.get('scope'), inserts=None)), args.model)
        dump_data_config(config, args.config_out, header=f'# The teacher {args.model!r} '
                         f'trained in {args.src}, exported by '
                         'tools/model_converters/extract_student.py --model.\n')
    torch.save(dict(state_dict=own, meta=meta), args.dst)
    print(f'Wrote {len(own)} tensors of the teacher {args.model!r} to {args.dst}' +
          (f' and its config to {args.config_out}' if args.config_out else ''))


def without_branch_record(record: dict) -> dict:
    """The run record with the student's training-only branches left out of its inserts."""
    from mmkd.distillers.inserts import without_branches
    student = dict(record['student'])
    student['inserts'] = without_branches(student.get('inserts'))
    return dict(record, student=student)


def student_record(record, config_path, src) -> dict:
    """The run record's config and student: from the checkpoint's run record, else from the
    distillation config the user names with ``--config``."""
    from mmkd.hooks.run_record import META_KEY, to_data
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
    return record


if __name__ == '__main__':
    main()
