"""AFD/RTK attention read-out (``last_attention``, ``last_kept_keys``, ``attention_stats``) and
tools/analysis/attention_maps.py.

The read-out is checked against a recomputation from the method's own modules (written out
here, not through the method's helpers), the running mean against per-sample sums, RTK's kept
keys against its selection rules by hand; the tool in process (state untouched, refusals) and
end to end from a fresh process on the digits demo configs.
"""
import json
import math
import os.path as osp

import pytest
import torch
from conftest import (DEMO, build, digits_cfg, load_tool_module, run_tool,
                      teacher_checkpoint_options)

from mmkd.methods.attention_kd import AFD, RTK, AttentionStats

RTK_CFG = osp.join(DEMO, 'digits', 'rtk_resnet34-wide_resnet18-tiny_digits.py')
AFD_CFG = osp.join(DEMO, 'digits', 'afd_resnet34-wide_resnet18-tiny_digits.py')
STUDENT = [(8, 8), (16, 4), (16, 4)]            # S = 3 levels: (channels, size)
TEACHER = [(12, 8), (24, 4), (24, 4), (32, 2)]  # T = 4


def maps(n, channels_sizes, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, c, s, s, generator=g) for c, s in channels_sizes]


def built(method, s, t):
    torch.manual_seed(0)
    method.build(s, t)
    return method


def manual_logits(method, queries, keys):
    """(N, Q, K) logits from the method's modules, written out: q = query_layers[i](GAP),
    k = key_layers[j](GAP), one key per pair from ``bilinear``, plus <p_q, p_k>, / sqrt(d)."""
    d = method.qk_dim
    n = queries[0].shape[0]
    q = [layer(m.mean(dim=(2, 3))) for layer, m in zip(method.query_layers, queries)]
    k = [layer(m.mean(dim=(2, 3))) for layer, m in zip(method.key_layers, keys)]
    out = torch.empty(n, len(q), len(k))
    for j, kj in enumerate(k):
        pair = method.bilinear(kj).view(n, len(q), d)  # key j's key for every query
        for i, qi in enumerate(q):
            out[:, i, j] = ((pair[:, i] * qi).sum(1) + method.query_pos[i] @ method.key_pos[j]) \
                / math.sqrt(d)
    return out


def distances(s, t):
    """(N, S, T): mean squared difference of the L2-normalised maps mean_c(f^2), the student's
    average-pooled to the teacher's size."""
    out = torch.empty(s[0].shape[0], len(s), len(t))
    for j, tm in enumerate(t):
        v_t = torch.nn.functional.normalize(tm.pow(2).mean(1).flatten(1), dim=1)
        for i, sm in enumerate(s):
            a = torch.nn.functional.adaptive_avg_pool2d(sm.pow(2).mean(1, keepdim=True),
                                                        tm.shape[2:])
            v_s = torch.nn.functional.normalize(a.flatten(1), dim=1)
            out[:, i, j] = (v_s - v_t).pow(2).mean(1)
    return out


def test_afd_read_out_is_the_attention_its_loss_used():
    s, t = maps(4, STUDENT), maps(4, TEACHER, seed=1)
    afd = built(AFD(qk_dim=16), s, t).eval()  # eval: BN running statistics, as the tool
    assert afd.last_attention is None and afd.last_kept_keys is None
    loss = afd(s, t)['loss_afd']
    attn = afd.last_attention
    assert attn.shape == (4, 3, 4) and not attn.requires_grad  # (N, S, T), no graph kept
    with torch.no_grad():
        expected = manual_logits(afd, t, s).softmax(dim=2).transpose(1, 2)  # over students
    torch.testing.assert_close(attn, expected)
    torch.testing.assert_close(attn.sum(1), torch.ones(4, 4))  # each teacher column sums to 1
    assert afd.softmax_over == 'student' and afd.last_kept_keys is None
    torch.testing.assert_close(loss, (attn * distances(s, t)).sum(dim=(1, 2)).mean())


def test_rtk_read_out_and_kept_keys_follow_its_selection():
    s, t = maps(4, STUDENT), maps(4, TEACHER, seed=1)
    rtk = built(RTK(qk_dim=16, num_keys=2), s, t).eval()
    loss = rtk(s, t)['loss_rtk']
    attn, kept = rtk.last_attention, rtk.last_kept_keys
    with torch.no_grad():
        logits = manual_logits(rtk, s, t)  # (N, S, T): student queries, teacher keys
    # top-2 of 4 by hand: the two largest logits of each row
    second = logits.sort(dim=2, descending=True).values[:, :, 1:2]
    torch.testing.assert_close(kept, logits >= second, rtol=0, atol=0)
    assert kept.dtype == torch.bool and (kept.sum(2) == 2).all()
    expected = torch.where(kept, logits.exp(), torch.zeros(())).div(
        torch.where(kept, logits.exp(), torch.zeros(())).sum(2, keepdim=True))
    torch.testing.assert_close(attn, expected)
    assert (attn[~kept] == 0).all() and (attn[kept] > 0).all()
    torch.testing.assert_close(attn.sum(2), torch.ones(4, 3))  # each student row sums to 1
    assert rtk.softmax_over == 'teacher'
    # the loss used exactly these weights (T/S = 4/3 by default)
    torch.testing.assert_close(loss, (attn * distances(s, t)).sum(dim=(1, 2)).mean() * 4 / 3)

    thr = built(RTK(qk_dim=16, selection='threshold', threshold=0.3), s, t).eval()
    thr(s, t)
    with torch.no_grad():
        probs = manual_logits(thr, s, t).softmax(2)
    by_hand = (probs >= 0.3) | (probs == probs.max(2, keepdim=True).values)
    torch.testing.assert_close(thr.last_kept_keys, by_hand, rtol=0, atol=0)
    every = built(RTK(qk_dim=16, selection='all'), s, t)
    every(s, t)
    assert every.last_kept_keys.all()


def test_running_mean_is_the_mean_over_samples_and_off_by_default():
    s, t = maps(10, STUDENT), maps(10, TEACHER, seed=1)
    rtk = built(RTK(qk_dim=16, num_keys=2), s, t).eval()
    rtk(s, t)
    assert rtk.attention_stats is None  # nothing accumulates unless asked
    rtk.reset_attention_stats()
    batches = [slice(0, 4), slice(4, 8), slice(8, 10)]  # 4 + 4 + 2 samples
    per_batch, kept = [], []
    for b in batches:
        rtk([x[b] for x in s], [x[b] for x in t])
        per_batch.append(rtk.last_attention)
        kept.append(rtk.last_kept_keys)
    stats = rtk.attention_stats
    assert stats.num_samples == 10
    # mean over samples: (sum of batch 1 + batch 2 + batch 3) / 10, the short batch by its 2
    torch.testing.assert_close(stats.mean, torch.cat(per_batch).sum(0) / 10)
    torch.testing.assert_close(stats.kept_fraction, torch.cat(kept).float().sum(0) / 10)
    # a further batch of all 10: (10 * mean_10 + sum of the 10) / 20
    mean_10 = stats.mean
    rtk(s, t)
    torch.testing.assert_close(rtk.attention_stats.mean,
                               (10 * mean_10 + rtk.last_attention.sum(0)) / 20)
    # with equal batches, the mean of the per-batch means
    rtk.reset_attention_stats()
    for b in batches[:2]:
        rtk([x[b] for x in s], [x[b] for x in t])
    torch.testing.assert_close(rtk.attention_stats.mean,
                               (per_batch[0].mean(0) + per_batch[1].mean(0)) / 2)
    rtk.reset_attention_stats(track=False)
    assert rtk.attention_stats is None
    afd = built(AFD(qk_dim=16), s, t)
    afd.reset_attention_stats()
    afd(s, t)
    assert afd.attention_stats.kept_fraction is None  # no selection in AFD
    assert AttentionStats().mean is None


def _tool():
    return load_tool_module('tools/analysis/attention_maps.py')


@pytest.fixture(scope='module')
def rtk_run(teacher_ckpts, tmp_path_factory):
    """The RTK digits distiller (random teacher, initialised student) and its checkpoint."""
    from mmkd.analysis import analysis_runner
    opts = teacher_checkpoint_options(RTK_CFG, teacher_ckpts)
    cfg_options = dict(o.split('=', 1) for o in opts)
    ckpt = str(tmp_path_factory.mktemp('rtk') / 'rtk.pth')
    with analysis_runner(RTK_CFG, None, cfg_options) as runner:
        torch.save(dict(state_dict=runner.model.state_dict()), ckpt)
        yield runner, ckpt, opts


def test_collect_attention_changes_nothing_and_averages_what_the_method_saw(rtk_run):
    from mmkd.analysis import analysis_batches
    tool = _tool()
    runner, _, _ = rtk_run
    model = runner.model
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    method = model.blocks['blocks'].method
    seen, dist = [], []

    def grab(_module, args, _out):
        seen.append(method.last_attention)
        dist.append(distances(args[0], args[1]))

    handle = method.register_forward_hook(grab)
    try:
        result = tool.collect_attention(
            model, analysis_batches(runner.val_dataloader, model, 20), 'blocks')
    finally:
        handle.remove()
    assert model.training and method.attention_stats is None  # modes restored, tracking off
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN statistics included
    att = torch.tensor(result['attention'])
    assert att.shape == (8, 16) and result['num_samples'] == 20 == sum(len(a) for a in seen)
    torch.testing.assert_close(att, torch.cat(seen).mean(0))
    torch.testing.assert_close(torch.tensor(result['distance']), torch.cat(dist).mean(0))
    kept = torch.tensor(result['kept_fraction'])
    torch.testing.assert_close(kept.sum(1), torch.full((8,), 8.0))  # top-8 of 16 per row
    assert result['dropped'] == (kept == 0).nonzero().tolist()
    assert result['student_points'][0] == 'backbone.layer1.0' and len(
        result['teacher_points']) == 16 and result['teacher_shapes'][0] == [16, 16, 16]


def test_blocks_without_attention_are_refused(rtk_run, teacher_ckpts):
    tool = _tool()
    model = rtk_run[0].model
    assert tool.select_block(model) == 'blocks'
    for name in ('logits', 'nope'):
        with pytest.raises(ValueError, match=r"blocks with an attention read-out: \['blocks'\]"):
            tool.select_block(model, name)
    kd = build(digits_cfg(teacher_ckpts['digits']))
    with pytest.raises(ValueError, match='no block whose method exposes its attention'):
        tool.select_block(kd)


def test_attention_maps_tool_end_to_end(rtk_run, tmp_path):
    _, ckpt, opts = rtk_run
    assert run_tool(['tools/analysis/attention_maps.py', '--help']).stdout.startswith('usage')
    out = tmp_path / 'rtk'
    proc = run_tool(['tools/analysis/attention_maps.py', RTK_CFG, ckpt, '--num-samples', '12',
                     '--out', str(out), '--cfg-options', *opts])
    result = json.loads((out / 'attention.json').read_text())
    assert result['block'] == 'blocks' and result['method'] == 'RTK'
    assert result['num_samples'] == 12 and result['softmax_over'] == 'teacher'
    att = torch.tensor(result['attention'])
    assert att.shape == (8, 16) == (len(result['student_points']), len(result['teacher_points']))
    torch.testing.assert_close(att.sum(1), torch.ones(8))
    assert (out / 'attention.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert "RTK block 'blocks': 8 student x 16 teacher layers, 12 samples" in proc.stdout


def named(i):
    """A distinct experiment name per runner built in this process: runners of one config
    built within the same second share MMEngine's default instance name, so the second one
    got the first one's Visualizer, writing into its (removed) temporary work dir."""
    return f'experiment_name=attention_maps_afd_{i}'


def test_attention_maps_tool_on_afd_in_process(teacher_ckpts, tmp_path):
    from mmkd.analysis import analysis_runner
    tool = _tool()
    opts = teacher_checkpoint_options(AFD_CFG, teacher_ckpts)
    ckpt = str(tmp_path / 'afd.pth')
    with analysis_runner(AFD_CFG, None, dict(o.split('=', 1) for o in opts + [named(0)])) \
            as runner:
        torch.save(dict(state_dict=runner.model.state_dict()), ckpt)
    tool.main([AFD_CFG, ckpt, '--num-samples', '10', '--out', str(tmp_path / 'afd'),
               '--cfg-options', *opts, named(1)])
    result = json.loads((tmp_path / 'afd' / 'attention.json').read_text())
    att = torch.tensor(result['attention'])
    assert result['method'] == 'AFD' and att.shape == (8, 16) and result['num_samples'] == 10
    torch.testing.assert_close(att.sum(0), torch.ones(16))  # each teacher column sums to 1
    assert result['kept_fraction'] is None and result['dropped'] is None
    assert (tmp_path / 'afd' / 'attention.png').stat().st_size > 0
    with pytest.raises(SystemExit, match=r"no attention read-out; blocks with an attention "
                                         r"read-out: \['blocks'\]"):
        tool.main([AFD_CFG, ckpt, '--block', 'logits', '--out', str(tmp_path / 'y'),
                   '--cfg-options', *opts, named(2)])
    # a plain student checkpoint has no trained attention modules: refused
    plain = tmp_path / 'student.pth'
    state = torch.load(ckpt)['state_dict']
    torch.save({k[len('student.'):]: v for k, v in state.items() if k.startswith('student.')},
               plain)
    with pytest.raises(SystemExit, match=r'has no methods\.blocks\.\* keys'):
        tool.main([AFD_CFG, str(plain), '--out', str(tmp_path / 'z'), '--cfg-options', *opts,
                   named(3)])
    assert not (tmp_path / 'y').exists() and not (tmp_path / 'z').exists()
