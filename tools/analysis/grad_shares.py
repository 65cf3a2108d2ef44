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

The measures (and each term's share of the summed norms) are :mod:`mmkd.analysis.grad_shares`,
which ``mmkd.GradientShareHook`` also logs during training, every N iterations.
"""
import argparse
import json
import os.path as osp
import sys

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)


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
    from mmkd.analysis import analysis_runner
    from mmkd.analysis.grad_shares import summarise, term_gradients

    with analysis_runner(args.config, args.student_checkpoint, args.cfg_options, args.seed,
                         what='gradient shares (its blocks)') as runner:
        model = runner.model
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

    head = ['term', 'norm (all)'] + [f'norm {p}' for p in parts] + ['share', 'cos with task']
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for term, r in table.items():
        cos = '' if r['cos_task'] is None else f'{r["cos_task"]:+.3f}'
        lines.append(f'| {term} | {r["norm"]["all"]:.4g} | ' +
                     ' | '.join(f'{r["norm"][p]:.4g}' for p in parts) +
                     f' | {r["share"]:.3f} | {cos} |')
    print(f'\n{args.config} ({len(per_batch)} batches'
          f'{", student " + args.student_checkpoint if args.student_checkpoint else ", init"})')
    print('\n'.join(lines))
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(dict(config=args.config, student_checkpoint=args.student_checkpoint,
                           batches=len(per_batch), terms=table), f, indent=1)


if __name__ == '__main__':
    main()
