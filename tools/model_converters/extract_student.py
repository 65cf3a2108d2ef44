"""Write a student-only checkpoint from a distillation checkpoint.

    python tools/model_converters/extract_student.py work_dirs/x/epoch_12.pth student.pth

The result holds the student's weights under the plain model's key names (``backbone.*``,
``neck.*`` ...), so the student's own base config loads it with ``load_from`` or
``tools/test.py BASE_CONFIG student.pth``. Teacher, methods, optimizer and scheduler states are
dropped; ``meta`` is kept (minus the distillation config text).

A student that carries inserted layers (``model.student_inserts``, e.g. letKD's KD layer) needs
them to predict, so the student's base config no longer builds it: the tool then also writes a
config beside the weights (``--config-out``, default ``DST`` with ``.py``), the distillation
config of the run with its ``model`` replaced by ``mmkd.StudentWithInserts(model=<student>,
inserts=<student_inserts>)``: ``tools/test.py DST.py DST`` gives the distilled student's
predictions. ``--config-out`` writes that config for any student.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import torch  # noqa: E402
from mmengine.config import Config, ConfigDict  # noqa: E402
from mmengine.runner.checkpoint import _load_checkpoint  # noqa: E402

import mmkd  # noqa: E402,F401  (makes MMEngine's checkpoint loading safe, for every scheme)
from mmkd.distillers import load_model_config  # noqa: E402
from mmkd.distillers.inserts import INSERTS_ATTR  # noqa: E402
from mmkd.utils import extract_student_state_dict, is_distiller_config  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src', help='checkpoint written while training a distiller (a path, '
                        'or any URL or scheme MMEngine loads: http(s)://, s3:// ...)')
    parser.add_argument('dst', help='where to write the student-only checkpoint')
    parser.add_argument('--config-out', default=None,
                        help='write the config that builds the exported student here '
                        '(default: DST with .py, when the student has inserted layers)')
    args = parser.parse_args()

    ckpt = _load_checkpoint(args.src, map_location='cpu')
    state = extract_student_state_dict(ckpt.get('state_dict', ckpt))
    meta = dict(ckpt.get('meta', {}))
    cfg_text = meta.pop('cfg', None)
    meta['mmkd_source_checkpoint'] = args.src if '://' in args.src else osp.abspath(args.src)
    inserted = any(k.startswith(f'{INSERTS_ATTR}.') for k in state)
    config_out = args.config_out or (osp.splitext(args.dst)[0] + '.py' if inserted else None)
    if config_out:
        if cfg_text is None:
            sys.exit(f'{args.src} has no config in its meta (cfg): cannot write {config_out}. '
                     'Write the student config by hand: model=dict(type='
                     "'mmkd.StudentWithInserts', model=<student>, inserts=<student_inserts>).")
        student_config(cfg_text).dump(config_out)
    torch.save(dict(state_dict=state, meta=meta), args.dst)
    print(f'Wrote {len(state)} student tensors to {args.dst}' +
          (f' and its config to {config_out}' if config_out else ''))


def student_config(cfg_text: str) -> Config:
    """The distillation config (text) with ``model`` replaced by its student, inserts included,
    as one model dict (no teacher, no methods)."""
    cfg = Config.fromstring(cfg_text, '.py')
    if not is_distiller_config(cfg.model):
        raise SystemExit('The checkpoint\'s config is not a distillation config.')
    student, scope = load_model_config(cfg.model.student)
    scope = cfg.model.get('student_scope') or scope or cfg.get('default_scope')
    inserts = cfg.model.get('student_inserts')
    if inserts:
        model = dict(type='mmkd.StudentWithInserts', model=student, inserts=inserts)
        if scope:
            model['scope'] = scope
    else:
        model = dict(student)
    cfg.model = ConfigDict(model)
    for key in ('load_from', 'resume', 'student_baseline'):
        cfg.pop(key, None)
    return cfg


if __name__ == '__main__':
    main()
