"""mmkd.analysis.cka (CKA: closed form, invariances, RBF, the minibatch estimator, streaming)
and tools/analysis/cka.py end to end on the digits KD demo config."""
import itertools
import json

import numpy as np
import pytest
import torch
from conftest import (DIGITS, build, digits_cfg, load_tool_module, random_teacher_checkpoint,
                      run_tool)

from mmkd.analysis import cka as C


def _tool():
    return load_tool_module('tools/analysis/cka.py')


def _data(n=40, p=6, q=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, p, generator=g, dtype=torch.float64)
    y = x @ torch.randn(p, q, generator=g, dtype=torch.float64) \
        + 0.7 * torch.randn(n, q, generator=g, dtype=torch.float64)
    return x, y


def _orthogonal(p, seed):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(p, p, generator=g, dtype=torch.float64))
    return q


def test_linear_cka_equals_the_closed_form():
    x, y = _data()
    xc, yc = x - x.mean(0), y - y.mean(0)
    # Kornblith et al. 2019: ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F), centred X, Y.
    closed = (torch.linalg.norm(yc.T @ xc) ** 2
              / (torch.linalg.norm(xc.T @ xc) * torch.linalg.norm(yc.T @ yc))).item()
    assert C.linear_cka(x, y) == pytest.approx(closed, rel=1e-10)
    assert C.cka(x, y, 'linear') == pytest.approx(closed, rel=1e-10)
    assert 0.2 < closed < 0.95  # a value that says something (neither 0 nor 1)
    # Features of any shape are flattened per sample: (n, 2, 3) is the same as (n, 6).
    assert C.linear_cka(x.reshape(-1, 2, 3), y) == pytest.approx(closed, rel=1e-10)


def test_cka_of_a_representation_with_itself_is_one():
    x, _ = _data()
    assert C.linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    assert C.rbf_cka(x, x) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize('kernel', ['linear', 'rbf'])
def test_invariant_to_orthogonal_maps_isotropic_scaling_and_translation(kernel):
    x, y = _data()
    base = C.cka(x, y, kernel)
    q = _orthogonal(x.shape[1], 1)
    assert C.cka(x @ q, y, kernel) == pytest.approx(base, rel=1e-9)
    assert C.cka(x, y @ _orthogonal(y.shape[1], 2), kernel) == pytest.approx(base, rel=1e-9)
    assert C.cka(3.7 * x, 0.2 * y, kernel) == pytest.approx(base, rel=1e-9)
    assert C.cka(x + 5.0, y - 2.0, kernel) == pytest.approx(base, rel=1e-9)


def test_linear_cka_is_not_invariant_to_invertible_linear_maps():
    # An invertible but non-orthogonal, non-isotropic map (one feature scaled 20x) changes
    # linear CKA (Kornblith et al. 2019: invariance to it would make CKA meaningless
    # when p >= n). CKA(X, XA) would be 1 if it were invariant.
    x, _ = _data(p=6)
    a = torch.eye(6, dtype=torch.float64)
    a[0, 0] = 20.0
    assert torch.linalg.det(a) != 0
    assert C.linear_cka(x, x @ a) < 0.9


def _rbf_cka_numpy(x, y, fraction):
    """Kornblith et al.'s RBF CKA written out with loops: the sigma of their gram_rbf (the
    fraction times the square root of the median of all n^2 squared distances)."""
    def gram(z):
        n = len(z)
        d2 = np.array([[np.sum((z[i] - z[j]) ** 2) for j in range(n)] for i in range(n)])
        sigma2 = fraction ** 2 * np.median(d2)
        return np.exp(-d2 / (2 * sigma2))
    k, l_ = gram(x.reshape(len(x), -1)), gram(y.reshape(len(y), -1))
    n = len(k)
    h = np.eye(n) - np.ones((n, n)) / n
    hsic = lambda a, b: np.trace(a @ h @ b @ h) / (n - 1) ** 2  # noqa: E731
    return hsic(k, l_) / np.sqrt(hsic(k, k) * hsic(l_, l_))


@pytest.mark.parametrize('fraction', [0.8, 0.3])
def test_rbf_cka_against_numpy(fraction):
    x, y = _data(n=21)  # odd n: the median is one entry, not a midpoint
    expected = _rbf_cka_numpy(x.numpy(), y.numpy(), fraction)
    assert C.rbf_cka(x, y, fraction) == pytest.approx(expected, rel=1e-10)
    x, y = _data(n=20, seed=3)  # even n^2: numpy's midpoint
    expected = _rbf_cka_numpy(x.numpy(), y.numpy(), fraction)
    assert C.rbf_cka(x, y, fraction) == pytest.approx(expected, rel=1e-10)
    assert C.rbf_cka(x, y, 0.8) != pytest.approx(C.linear_cka(x, y), rel=1e-3)


def _hsic_u(k, l_):
    """The unbiased HSIC as a U-statistic over distinct indices (Song et al. 2012):
    (n)_2^-1 sum k_ij l_ij + (n)_4^-1 sum k_ij l_qr - 2 (n)_3^-1 sum k_ij l_iq."""
    n = len(k)
    s2 = sum(k[i, j] * l_[i, j] for i, j in itertools.permutations(range(n), 2))
    s3 = sum(k[i, j] * l_[i, q] for i, j, q in itertools.permutations(range(n), 3))
    s4 = sum(k[i, j] * l_[q, r] for i, j, q, r in itertools.permutations(range(n), 4))
    p2, p3, p4 = n * (n - 1), n * (n - 1) * (n - 2), n * (n - 1) * (n - 2) * (n - 3)
    return s2 / p2 + s4 / p4 - 2 * s3 / p3


def test_hsic1_equals_the_u_statistic():
    x, y = _data(n=7)
    k, l_ = C.gram_linear(x), C.gram_rbf(y)
    assert C.hsic1(k, l_).item() == pytest.approx(_hsic_u(k.numpy(), l_.numpy()), rel=1e-9)
    with pytest.raises(ValueError, match='at least 4'):
        C.hsic1(k[:3, :3], l_[:3, :3])


def test_minibatch_cka_formula_and_agreement_with_the_full_estimator():
    x, y = _data(n=12, seed=4)
    batches = [(x[:7], y[:7]), (x[7:], y[7:])]
    hs = [[_hsic_u(C.gram_linear(a).numpy(), C.gram_linear(b).numpy()) for a, b in pairs]
          for pairs in ([(bx, by) for bx, by in batches], [(bx, bx) for bx, _ in batches],
                        [(by, by) for _, by in batches])]
    xy, xx, yy = (np.mean(h) for h in hs)
    assert C.minibatch_cka(batches) == pytest.approx(xy / np.sqrt(xx * yy), rel=1e-9)

    # On a large sample the minibatch estimate (unbiased HSIC_1 averaged over 60 batches of
    # 20) is close to the full one (biased HSIC over all 1,200 samples): both estimate the same
    # population CKA. Averaging the *biased* HSIC over the same batches is not (measured: about
    # +0.06 over seeds 5-8, against at most 0.007 for HSIC_1): why Nguyen et al. use HSIC_1.
    x, y = _data(n=1200, p=8, q=8, seed=5)
    full = C.linear_cka(x, y)
    xs, ys = x.split(20), y.split(20)
    mb = C.minibatch_cka(zip(xs, ys))
    assert 0.3 < full < 0.9
    assert mb == pytest.approx(full, abs=0.02)

    def biased(a, b):
        return sum(C.hsic(C.gram_linear(u), C.gram_linear(v)).item() for u, v in zip(a, b))
    assert biased(xs, ys) / np.sqrt(biased(xs, xs) * biased(ys, ys)) > full + 0.04
    assert C.minibatch_cka(zip(xs, ys), 'rbf') == pytest.approx(C.rbf_cka(x, y), abs=0.02)


@pytest.mark.parametrize('kernel', ['linear', 'rbf'])
def test_streaming_accumulator_equals_the_one_shot_computation(kernel):
    g = torch.Generator().manual_seed(6)
    n = 30
    feats = {'s.a': torch.randn(n, 4, 3, generator=g), 's.b': torch.randn(n, 5, generator=g),
             't:a': torch.randn(n, 2, 2, 2, generator=g)}
    noise = torch.randn(n, 3, generator=g)
    feats['t:b'] = feats['s.b'] @ torch.randn(5, 3, generator=g) + 0.3 * noise
    rows, cols = ['s.a', 's.b'], ['t:a', 't:b', 's.b']  # a name in both: computed once
    sizes = [8, 8, 11, 3]  # uneven; the last one too small for HSIC_1
    chunks = [dict(zip(feats, parts)) for parts in zip(
        *(v.split(sizes) for v in feats.values()))]
    full = C.accumulate(chunks, rows, cols, estimator='full', kernel=kernel)
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            assert full[i, j].item() == pytest.approx(C.cka(feats[r], feats[c], kernel),
                                                      rel=1e-9)
    acc = C.CKAAccumulator(rows, cols, 'minibatch', kernel)
    for chunk in chunks:
        acc.update(chunk)
    mb = acc.compute()
    assert acc.skipped == 1 and acc.num_batches == 3 and acc.num_samples == 27
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            pairs = [(ch[r], ch[c]) for ch in chunks[:3]]
            assert mb[i, j].item() == pytest.approx(C.minibatch_cka(pairs, kernel), rel=1e-9)
    assert mb[1, 2].item() == pytest.approx(1.0)  # s.b with itself
    with pytest.raises(KeyError, match='lacks points'):
        acc.update({'s.a': feats['s.a']})
    with pytest.raises(ValueError, match='max_samples'):
        C.accumulate(chunks, rows, cols, estimator='full', max_samples=20)


def test_point_features_split_tuples_and_refuse_what_is_not_batch_first():
    a, b = torch.zeros(4, 3, 2, 2), torch.ones(4, 5)
    assert [name for name, _ in C.point_features('neck', (a, [b, a]), 4)] == \
        ['neck[0]', 'neck[1][0]', 'neck[1][1]']
    assert C.point_features('x', a, 4)[0][1] is a
    with pytest.raises(ValueError, match="'x'.*first dimension"):
        C.point_features('x', torch.zeros(3, 4), 4)
    with pytest.raises(ValueError, match="'y'.*NoneType"):
        C.point_features('y', None, 4)


def test_bad_point_names_are_refused_with_the_valid_choices(teacher_ckpts):
    tool = _tool()
    model = build(digits_cfg(teacher_ckpts['digits']))
    rows, cols = tool.resolve_points(model, ['blocks', 'backbone.layer*'], ['teacher:neck'])
    assert [str(p) for p in rows] == ['head.fc'] + [f'backbone.layer{i}' for i in range(1, 5)]
    assert [(n, str(p)) for n, p in cols] == [('teacher', 'neck')]
    with pytest.raises(SystemExit, match=r"(?s)--student-points 'backbone.layr4'.*"
                                         r"backbone.layer4.*block points are \['head.fc'\]"):
        tool.resolve_points(model, ['backbone.layr4'], ['blocks'])
    with pytest.raises(SystemExit, match=r"(?s)unknown teacher 'tacher'.*\['teacher'\]"):
        tool.resolve_points(model, ['blocks'], ['tacher:head.fc'])
    with pytest.raises(SystemExit, match=r"(?s)--teacher-points 'head.fx'.*teacher:head.fc"):
        tool.resolve_points(model, ['blocks'], ['head.fx'])


def test_cka_tool_on_the_digits_kd_config(tmp_path, teacher_ckpts):
    student = random_teacher_checkpoint(DIGITS['student'], str(tmp_path / 'student.pth'), 1)
    out = tmp_path / 'cka'
    proc = run_tool(['tools/analysis/cka.py', DIGITS['distill'], student, '--out', str(out),
                     '--num-samples', '24', '--batch-size', '8',
                     '--student-points', 'blocks', 'backbone.layer*', 'neck',
                     '--teacher-points', 'blocks', 'backbone.layer4',
                     '--cfg-options', f'model.teacher.checkpoint={teacher_ckpts["digits"]}'])
    result = json.loads((out / 'cka.json').read_text())
    # neck (GlobalAveragePooling) gives a 1-tuple: one row 'neck[0]'.
    assert result['student_points'] == ['head.fc'] + [f'backbone.layer{i}' for i in
                                                      range(1, 5)] + ['neck[0]']
    assert result['teacher_points'] == ['teacher:head.fc', 'teacher:backbone.layer4']
    m = np.array(result['matrix'], dtype=float)
    assert m.shape == (6, 2) and np.all((m >= 0) & (m <= 1 + 1e-9))
    assert result['num_samples'] == 24 and result['estimator'] == 'full'
    assert result['kernel'] == 'linear' and result['checkpoint'] == student
    assert result['feature_dims']['head.fc'] == 10
    png = (out / 'cka.png').read_bytes()
    assert png[:8] == b'\x89PNG\r\n\x1a\n' and len(png) > 5000
    assert 'linear CKA, full estimator, 24 val samples' in proc.stdout


@pytest.mark.slow
def test_cka_tool_minibatch_on_fpn_levels(tmp_path, teacher_ckpts, shapes_root):
    """The detection demo (FPN: a tuple of levels, one row/column each) with the minibatch
    estimator. Slow (a detector build and run, ~20 s); the default tests cover the same code:
    the tool above, point_features' splitting and the minibatch accumulator."""
    from conftest import DET, shapes_options
    student = random_teacher_checkpoint(DET['student'], str(tmp_path / 'student.pth'), 1)
    out = tmp_path / 'cka'
    run_tool(['tools/analysis/cka.py', DET['distill'], student, '--out', str(out),
              '--num-samples', '8', '--batch-size', '4', '--estimator', 'minibatch',
              '--cfg-options', f'model.teacher.checkpoint={teacher_ckpts["det"]}',
              *shapes_options(shapes_root, det=True)])
    result = json.loads((out / 'cka.json').read_text())
    levels = len(result['student_points'])
    assert levels > 1 and result['student_points'] == [f'neck[{i}]' for i in range(levels)]
    assert result['teacher_points'] == [f'teacher:neck[{i}]' for i in range(levels)]
    assert result['minibatches'] == dict(used=2, skipped=0)
    assert np.array(result['matrix'], dtype=float).shape == (levels, levels)
