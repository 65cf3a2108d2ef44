"""tools/analysis/grad_shares.py and its measures (mmkd.analysis.grad_shares, shared with
mmkd.GradientShareHook): per-term gradient norms, shares and cosines, by hand and end to end."""
import json

import pytest
import torch
from conftest import DIGITS, run_tool

from mmkd.analysis import grad_shares as tool


def test_term_gradients_and_summary_by_hand():
    w = torch.tensor([1.0, 2.0], requires_grad=True)   # 'backbone.w'
    v = torch.tensor([3.0], requires_grad=True)        # 'head.v'
    x = torch.tensor([1.0, -1.0])
    losses = {'student.loss_cls': (w * x).sum() + 2 * v.sum(),
              'student.acc': w.sum() * 100,            # not a loss: ignored
              'distill.feat.loss_mse': -3 * (w * x).sum(),
              'distill.feat.loss_aux': [w.sum(), w.sum()],  # lists are summed too
              'distill.feat.gap': w.sum()}             # diagnostic: ignored
    grads = tool.term_gradients(losses, [w, v])
    assert set(grads) == {'task', 'distill.feat'}
    torch.testing.assert_close(grads['task'][0], x)
    torch.testing.assert_close(grads['task'][1], torch.tensor([2.0]))
    torch.testing.assert_close(grads['distill.feat'][0], -3 * x + 2)   # (-1, 5)
    torch.testing.assert_close(grads['distill.feat'][1], torch.zeros(1))  # unused -> zeros
    parts, table = tool.summarise([grads], ['backbone.w', 'head.v'])
    assert parts == ['backbone', 'head']
    assert table['task']['norm']['all'] == pytest.approx(6 ** 0.5)      # |(1, -1, 2)|
    assert table['task']['norm']['head'] == pytest.approx(2.0)
    assert table['distill.feat']['norm']['backbone'] == pytest.approx(26 ** 0.5)
    # cos((-1, 5, 0), (1, -1, 2)) = -6 / (sqrt(26) sqrt(6))
    assert table['distill.feat']['cos_task'] == pytest.approx(-6 / (26 ** 0.5 * 6 ** 0.5))
    assert table['task']['cos_task'] is None
    # share = norm / (sum of the terms' norms): sqrt(6) / (sqrt(6) + sqrt(26 + 0))
    assert table['task']['share'] == pytest.approx(6 ** 0.5 / (6 ** 0.5 + 26 ** 0.5))
    # Two batches: the mean of the per-batch values (the second batch's gradients doubled).
    doubled = {t: [2 * g for g in gs] for t, gs in grads.items()}
    _, table2 = tool.summarise([grads, doubled], ['backbone.w', 'head.v'])
    assert table2['task']['norm']['all'] == pytest.approx(1.5 * 6 ** 0.5)
    assert table2['distill.feat']['cos_task'] == pytest.approx(table['distill.feat']['cos_task'])


def test_grad_shares_tool_on_the_digits_kd_config(tmp_path, teacher_ckpts):
    out = tmp_path / 'shares.json'
    proc = run_tool(['tools/analysis/grad_shares.py', DIGITS['distill'], '--batches', '2',
                     '--out', str(out), '--cfg-options',
                     f'model.teacher.checkpoint={teacher_ckpts["digits"]}',
                     'train_dataloader.batch_size=8'])
    terms = json.loads(out.read_text())['terms']
    assert set(terms) == {'task', 'distill.logits'}
    # Logit KD reaches the head and, through it, the backbone; never the data preprocessor.
    assert terms['distill.logits']['norm']['head'] > 0
    assert terms['distill.logits']['norm']['backbone'] > 0
    assert -1 <= terms['distill.logits']['cos_task'] <= 1
    assert terms['task']['share'] + terms['distill.logits']['share'] == pytest.approx(1)
    assert '| distill.logits |' in proc.stdout
