"""Which loss term drives the student: each term's gradient on the student's parameters.

Shared by ``tools/analysis/grad_shares.py`` (at one checkpoint, over a few batches) and
:class:`mmkd.hooks.GradientShareHook` (over training, every N iterations). For a batch, with
``theta`` the student's trainable parameters (flattened and concatenated):

- the *task* term ``L_task``: the sum of the student's own ``student.loss*`` terms;
- each distillation block ``b``: ``L_b``, the sum of its ``distill.<b>.loss*`` terms as the
  distiller returns them (already multiplied by the block's loss weight, summed over levels);
- ``g_t = dL_t / d theta`` for each term ``t`` (taken separately with
  :func:`torch.autograd.grad`, ``retain_graph=True``; nothing is accumulated into ``.grad``);
- ``norm_t = ||g_t||_2`` over the whole student, and over each top-level part (``backbone``,
  ``neck``, ``head``: the first component of the parameter names);
- ``share_t = norm_t / sum_u norm_u``, the sum over the task and every block (so the shares of
  one batch add up to 1; 0 when every gradient is 0);
- ``cos_task_b = <g_b, g_task> / (||g_b|| ||g_task||)`` (blocks only; PyTorch's
  ``cosine_similarity``, whose ``eps=1e-8`` makes it 0 when one of the gradients is 0).

Losses of a trainable teacher (``<teacher>.loss*``) and keys without ``loss`` in their last
component (accuracies, diagnostics, ``distill.<b>.weight``) are not terms.
"""
from collections import defaultdict
from typing import Dict, List, Optional, Sequence

import torch

#: The task term's name (the student's own losses).
TASK = 'task'


def term_of(key: str) -> Optional[str]:
    """The term a loss key belongs to: ``'task'`` for ``student.loss*``, ``'distill.<b>'`` for
    ``distill.<b>.loss*``, None for anything else (not a loss, a trainable teacher's loss)."""
    parts = key.split('.')
    if 'loss' not in parts[-1]:
        return None
    if parts[0] == 'student':
        return TASK
    if parts[0] == 'distill' and len(parts) >= 3:
        return f'distill.{parts[1]}'
    return None


def term_gradients(losses: Dict[str, object],
                   params: Sequence[torch.Tensor]) -> Dict[str, List[torch.Tensor]]:
    """``{term: [grad per param]}`` for the task and each distillation block (see the module
    docstring); a value may be a tensor or a list of tensors (each summed). Unused parameters
    get zeros. The graph is retained (the caller's losses stay usable)."""
    groups = defaultdict(list)
    for key, value in losses.items():
        term = term_of(key)
        if term is None:
            continue
        values = value if isinstance(value, (list, tuple)) else [value]
        groups[term].extend(v.sum() for v in values)
    grads = {}
    for term, terms in groups.items():
        total = torch.stack(terms).sum()
        got = torch.autograd.grad(total, list(params), retain_graph=True, allow_unused=True)
        grads[term] = [torch.zeros_like(p) if g is None else g for g, p in zip(got, params)]
    return grads


def part_of(name: str) -> str:
    """The top-level part of a parameter name: ``'backbone.layer1.0.conv1.weight'`` ->
    ``'backbone'``."""
    return name.split('.')[0]


def gradient_stats(grads: Dict[str, List[torch.Tensor]], names: Sequence[str],
                   by_part: bool = True) -> Dict[str, dict]:
    """One batch's statistics of :func:`term_gradients`' output: per term ``norm`` (a dict:
    ``'all'`` and, with ``by_part``, one entry per part), ``share`` and ``cos_task`` (None for
    the task, and for every term when there is no task term), as floats (module docstring)."""
    parts = sorted({part_of(n) for n in names}) if by_part else []
    flat = {t: torch.cat([g.detach().flatten().float() for g in gs]) for t, gs in grads.items()}
    stats = {}
    for term, gs in grads.items():
        norm = {'all': flat[term].norm().item()}
        for part in parts:
            sel = [g.detach().flatten().float() for g, n in zip(gs, names) if part_of(n) == part]
            norm[part] = torch.cat(sel).norm().item()
        cos = None
        if term != TASK and TASK in flat:
            cos = torch.nn.functional.cosine_similarity(flat[term], flat[TASK], dim=0).item()
        stats[term] = dict(norm=norm, cos_task=cos)
    total = sum(s['norm']['all'] for s in stats.values())
    for s in stats.values():
        s['share'] = s['norm']['all'] / total if total > 0 else 0.0
    return stats


def summarise(per_batch: List[Dict[str, List[torch.Tensor]]], names: Sequence[str]):
    """``(parts, table)``: the mean over batches of :func:`gradient_stats` (per-part norms,
    share, cosine with the task). ``per_batch``: list of :func:`term_gradients` outputs;
    ``names``: the parameters' names."""
    parts = sorted({part_of(n) for n in names})
    stats = [gradient_stats(grads, names) for grads in per_batch]
    table = {}
    for term in per_batch[0]:
        rows = [s[term] for s in stats]
        cosines = [r['cos_task'] for r in rows if r['cos_task'] is not None]
        table[term] = dict(
            norm={k: sum(r['norm'][k] for r in rows) / len(rows) for k in ['all'] + parts},
            share=sum(r['share'] for r in rows) / len(rows),
            cos_task=sum(cosines) / len(cosines) if cosines else None)
    return parts, table
