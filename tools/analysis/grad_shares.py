"""Which loss term drives the student: gradient norms and directions per term.

    python tools/analysis/grad_shares.py CONFIG --cfg-options model.teacher.checkpoint=T.pth
    python tools/analysis/grad_shares.py CONFIG --student-checkpoint RUN/iter_400.pth ...

For a distillation config, builds the model and training data as ``tools/train.py`` would,
then over ``--batches`` training batches takes the gradient of each loss term with respect to
the student's parameters: the task (the sum of the student's own ``loss*`` terms) and each
distillation block (its weighted ``loss*`` terms), separately. Prints, per term and per part of
the student (its top-level children: backbone, neck, heads), the gradient's L2 norm (mean over
batches) and, over the whole student, the cosine between each block's gradient and the task's.
A block whose norm is many times the task's decides where the student goes; a cosine below 0
means it pulls against the task. ``--student-checkpoint`` loads student weights from a
checkpoint (a distiller's run: its ``student.*`` keys; or a plain student's) to measure the
same thing at the end of training, where the teacher's and the task's optima may differ.
No optimizer step is taken; nothing is written except with ``--out``.
"""
import argparse
import json
import os.path as osp
import sys
import tempfile
from collections import defaultdict

import torch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)


def term_gradients(losses, params):
    """{term: [grad per param]} for the task (student ``loss*`` terms summed) and each
    distillation block (its ``loss*`` terms summed); unused parameters get zeros."""
    groups = defaultdict(list)
    for key, value in losses.items():
        if 'loss' not in key.split('.')[-1]:
            continue
        parts = key.split('.')
        group = 'task' if parts[0] == 'student' else f'distill.{parts[1]}'
        values = value if isinstance(value, (list, tuple)) else [value]
        groups[group].extend(v.sum() for v in values)
    grads = {}
    for group, terms in groups.items():
        total = torch.stack(terms).sum()
        got = torch.autograd.grad(total, params, retain_graph=True, allow_unused=True)
        grads[group] = [torch.zeros_like(p) if g is None else g for g, p in zip(got, params)]
    return grads


def summarise(per_batch, names):
    """Mean over batches of the per-part norms and of the whole-student cosine with the task.
    ``per_batch``: list of {term: [grad per param]}; ``names``: the params' names."""
    parts = sorted({n.split('.')[0] for n in names})
    table = {}
    for term in per_batch[0]:
        norms = {part: [] for part in parts}
        norms['all'] = []
        cosines = []
        for grads in per_batch:
            flat = torch.cat([g.flatten() for g in grads[term]])
            norms['all'].append(flat.norm().item())
            for part in parts:
                sel = [g.flatten() for g, n in zip(grads[term], names) if n.split('.')[0] == part]
                norms[part].append(torch.cat(sel).norm().item())
            if term != 'task' and 'task' in grads:
                task = torch.cat([g.flatten() for g in grads['task']])
                cosines.append(torch.nn.functional.cosine_similarity(flat, task, dim=0).item())
        table[term] = dict(norm={k: sum(v) / len(v) for k, v in norms.items()},
                           cos_task=sum(cosines) / len(cosines) if cosines else None)
    return parts, table


def main():
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config')
    parser.add_argument('--batches', type=int, default=8)
    parser.add_argument('--student-checkpoint', default=None)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--out', default=None, help='write the table as JSON here')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    args = parser.parse_args()
    # After parsing, so that --help answers at once (the OpenMMLab packages take seconds).
    from mmengine.runner import Runner

    from mmkd.utils.checkpoint import safe_torch_load
    from mmkd.utils.tool_config import is_distiller_config, load_tool_config

    with tempfile.TemporaryDirectory() as work_dir:
        cfg = load_tool_config(args.config, 'none', args.cfg_options, work_dir)
        if not is_distiller_config(cfg.model):
            sys.exit(f'{args.config}: not a distiller config (model type '
                     f'{cfg.model.get("type")!r}); gradient shares need distillation blocks.')
        cfg.randomness = dict(seed=args.seed, deterministic=False)
        cfg.visualizer = None
        runner = Runner.from_cfg(cfg)
        model = runner.model
        if args.student_checkpoint:
            state = safe_torch_load(args.student_checkpoint)
            state = state.get('state_dict', state)
            if any(k.startswith('student.') for k in state):
                # A distiller's checkpoint: the student and the methods' own modules.
                missing, _ = model.load_state_dict(state, strict=False)
                missing = [k for k in missing if k.startswith(('student.', 'methods.'))]
                if missing:
                    sys.exit(f'{args.student_checkpoint} lacks {missing[:5]} '
                             f'({len(missing)} keys)')
            else:
                model.student.load_state_dict(state, strict=True)
        else:
            model.init_weights()  # as tools/train.py starts (the teacher is not re-initialised)
        model.train()
        named = [(n, p) for n, p in model.student.named_parameters() if p.requires_grad]
        names, params = [n for n, _ in named], [p for _, p in named]
        per_batch = []
        for i, data in enumerate(runner.train_dataloader):
            if i == args.batches:
                break
            data = model.data_preprocessor(data, True)
            losses = model(**data, mode='loss')
            per_batch.append(term_gradients(losses, params))
    parts, table = summarise(per_batch, names)

    head = ['term', 'norm (all)'] + [f'norm {p}' for p in parts] + ['cos with task']
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for term, r in table.items():
        cos = '' if r['cos_task'] is None else f'{r["cos_task"]:+.3f}'
        lines.append(f'| {term} | {r["norm"]["all"]:.4g} | ' +
                     ' | '.join(f'{r["norm"][p]:.4g}' for p in parts) + f' | {cos} |')
    print(f'\n{args.config} ({len(per_batch)} batches'
          f'{", student " + args.student_checkpoint if args.student_checkpoint else ", init"})')
    print('\n'.join(lines))
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(dict(config=args.config, student_checkpoint=args.student_checkpoint,
                           batches=len(per_batch), terms=table), f, indent=1)


if __name__ == '__main__':
    main()
