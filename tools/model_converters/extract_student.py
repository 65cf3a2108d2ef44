"""Write a student-only checkpoint from a distillation checkpoint.

    python tools/model_converters/extract_student.py work_dirs/x/epoch_12.pth student.pth

The result holds the student's weights under the plain model's key names (``backbone.*``,
``neck.*`` ...), so the student's own base config loads it with ``load_from`` or
``tools/test.py BASE_CONFIG student.pth``. Teacher, methods, optimizer and scheduler states are
dropped; ``meta`` is kept (minus the distillation config text).
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import torch  # noqa: E402
from mmengine.runner.checkpoint import _load_checkpoint  # noqa: E402

import mmkd  # noqa: E402,F401  (makes MMEngine's checkpoint loading safe, for every scheme)
from mmkd.utils import extract_student_state_dict  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src', help='checkpoint written while training a distiller (a path, '
                        'or any URL or scheme MMEngine loads: http(s)://, s3:// ...)')
    parser.add_argument('dst', help='where to write the student-only checkpoint')
    args = parser.parse_args()

    ckpt = _load_checkpoint(args.src, map_location='cpu')
    state = extract_student_state_dict(ckpt.get('state_dict', ckpt))
    meta = dict(ckpt.get('meta', {}))
    meta.pop('cfg', None)
    meta['mmkd_source_checkpoint'] = args.src if '://' in args.src else osp.abspath(args.src)
    torch.save(dict(state_dict=state, meta=meta), args.dst)
    print(f'Wrote {len(state)} student tensors to {args.dst}')


if __name__ == '__main__':
    main()
