"""letKD (issue 15): the cosine convolution and the KD layer's residual maths; the penultimate
soft-assignment targets and the label-masked sub-class targets against direct computations;
the templates tool on a demo teacher; layers inserted into the student, kept through export,
and tools/test.py giving identical predictions on the exported pair; tools/train.py end to
end."""
import copy
import os.path as osp
import pickle

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import mmkd  # noqa: F401
from mmkd.distillers import attach_inserts, build_student_with_inserts
from mmkd.methods.letkd import (CosineConv2d, KDLayer, LetKD, LetKDSubclass, pool_to,
                                positionwise_kl)

from conftest import DIGITS, REPO, build, digits_cfg, random_teacher_checkpoint, run_tool

DIGITS_DIR = osp.join(REPO, 'configs', 'demo', 'digits')
LETKD2 = osp.join(DIGITS_DIR, 'letkd-2_resnet34-wide_resnet18-tiny_digits.py')
TOOL = osp.join(REPO, 'tools', 'analysis', 'letkd_templates.py')


def save_templates(path, **data):
    torch.save(data, path)
    return str(path)


def test_cosine_conv_is_scaled_cosine_of_input_and_kernel():
    torch.manual_seed(0)
    conv = CosineConv2d(5, 3, scale=3.0)
    x = torch.randn(2, 5, 4, 3)
    y = conv(x)
    assert y.shape == (2, 3, 4, 3)
    for b, k, i, j in [(0, 0, 0, 0), (1, 2, 3, 2), (0, 1, 2, 1)]:
        expected = 3.0 * F.cosine_similarity(x[b, :, i, j], conv.weight[k], dim=0)
        assert torch.allclose(y[b, k, i, j], expected, atol=1e-6)
    assert y.abs().max() <= 3.0 + 1e-6
    # invariant to the norm of the input at each position and of each kernel row
    assert torch.allclose(conv(x * torch.rand(2, 1, 4, 3) * 10 + 0), y, atol=1e-5)
    assert isinstance(conv.scale, nn.Parameter) and conv.scale.item() == 3.0
    assert not isinstance(CosineConv2d(5, 3, learn_scale=False).scale, nn.Parameter)
    y.sum().backward()
    assert conv.scale.grad is not None and conv.weight.grad is not None


def test_kd_layer_is_residual_with_the_authors_defaults():
    torch.manual_seed(0)
    layer = KDLayer(6, 10, alpha=0.5).eval()
    assert layer.scores.scale.item() == 3.0 and layer.value.scale.item() == 1.0
    x = torch.randn(2, 6, 3, 3)
    scores = layer.scores(x)
    value = layer.value(F.relu(layer.bn(scores)))
    assert torch.allclose(layer(x), x + 0.5 * value, atol=1e-6)
    assert value.abs().max() <= 1.0 + 1e-6  # cosine x value scale 1
    assert torch.equal(KDLayer(6, 10, alpha=0.0).eval()(x), x)
    with pytest.raises(TypeError, match='one .B, C, H, W. map'):
        layer((x, ))


def test_penultimate_target_and_loss_against_a_direct_computation(tmp_path):
    torch.manual_seed(0)
    centres = torch.randn(7, 4)
    method = LetKD(save_templates(tmp_path / 'k.pth', kind='kmeans', centres=centres),
                   temperature=2.0)
    f = torch.randn(2, 4, 3, 3)
    s = torch.randn(2, 7, 3, 3)
    method.build(s, f)
    target = method.target(f)
    loss, n = 0.0, 0
    for b in range(2):
        for i in range(3):
            for j in range(3):
                d = ((f[b, :, i, j][None] - centres) ** 2).sum(1)
                p = torch.softmax(-d / 2.0, 0)
                assert torch.allclose(target[b, :, i, j], p, atol=1e-5)
                q = torch.log_softmax(s[b, :, i, j], 0)
                loss += (p * (p.log() - q)).sum()
                n += 1
    out = method(s, f)['loss_letkd']
    assert torch.allclose(out, loss / n, atol=1e-5)
    # zero when the student's scores are the target's logits (up to a constant)
    assert method(target.log() + 5.0, f)['loss_letkd'].abs() < 1e-5
    # the teacher map is average-pooled to the student's size (the authors' 2x2)
    big = torch.randn(2, 4, 6, 6)
    assert torch.allclose(pool_to(big, s), F.avg_pool2d(big, 2))
    assert torch.allclose(method(s, big)['loss_letkd'],
                          positionwise_kl(method.target(F.avg_pool2d(big, 2)), s))


def test_penultimate_errors_name_the_mismatch(tmp_path):
    path = save_templates(tmp_path / 'k.pth', kind='kmeans', centres=torch.zeros(7, 4))
    with pytest.raises(ValueError, match=r'4-channel features but the teacher point gives 5'):
        LetKD(path).build(torch.zeros(1, 7, 2, 2), torch.zeros(1, 5, 2, 2))
    with pytest.raises(ValueError, match=r'num_templates=7'):
        LetKD(path).build(torch.zeros(1, 8, 2, 2), torch.zeros(1, 4, 2, 2))
    with pytest.raises(ValueError, match='integer multiple'):
        LetKD(path).build(torch.zeros(1, 7, 2, 2), torch.zeros(1, 4, 3, 3))
    with pytest.raises(ValueError, match="'subclass'"):
        LetKDSubclass(path)
    torch.save(dict(centres=torch.zeros(2, 2)), tmp_path / 'bad.pth')
    with pytest.raises(ValueError, match='not a letKD templates file'):
        LetKD(str(tmp_path / 'bad.pth'))
    with pytest.raises(FileNotFoundError, match='letkd_templates.py --kind subclass'):
        LetKDSubclass(str(tmp_path / 'missing.pth'))


def subclass_file(tmp_path):
    """2 classes x 2 sub-classes in a 2-d LDA space (identity projection of 2 channels)."""
    centres = torch.tensor([[0., 0.], [4., 0.],     # class 0: sub-classes 0, 1
                            [1., 0.], [0., 4.]])    # class 1: sub-classes 2, 3
    scores = torch.softmax(torch.randn(4, 4), 1)
    return save_templates(tmp_path / 's.pth', kind='subclass', lda_mean=torch.zeros(2),
                          lda_scalings=torch.eye(2), centres=centres, score_matrix=scores,
                          num_subclasses=2), scores


def test_subclass_assignment_is_masked_by_the_ground_truth_class(tmp_path):
    from mmpretrain.structures import DataSample
    path, scores = subclass_file(tmp_path)
    method = LetKDSubclass(path)
    # one position per image at (0.9, 0): nearest overall is sub-class 2 (class 1), but an
    # image of class 0 takes the nearest of ITS sub-classes (0); class 1 takes 2.
    f = torch.tensor([0.9, 0.0]).view(1, 2, 1, 1).repeat(2, 1, 1, 1)
    labels = torch.tensor([0, 1])
    assert method.assign(f, labels).flatten().tolist() == [0, 2]
    # (3.5, 0): class 0 -> sub-class 1 (4, 0); class 1 -> sub-class 2 (1, 0), not 3 (0, 4)
    f2 = torch.tensor([3.5, 0.0]).view(1, 2, 1, 1).repeat(2, 1, 1, 1)
    assert method.assign(f2, labels).flatten().tolist() == [1, 2]
    samples = [DataSample().set_gt_label(int(y)) for y in labels]
    s = torch.randn(2, 4, 1, 1)
    method.build(s, f)
    target = method.target(f, samples)
    assert torch.allclose(target[:, :, 0, 0], scores[[0, 2]])
    expected = sum((scores[r] * (scores[r].log() - torch.log_softmax(s[i, :, 0, 0], 0))).sum()
                   for i, r in enumerate([0, 2])) / 2
    assert torch.allclose(method(s, f, samples)['loss_letkd'], expected, atol=1e-5)
    # LDA projection is applied before the distances: a shift by lda_mean moves nothing
    shifted = save_templates(tmp_path / 's2.pth', kind='subclass', lda_mean=torch.ones(2),
                             lda_scalings=torch.eye(2), centres=method.centres,
                             score_matrix=scores, num_subclasses=2)
    assert LetKDSubclass(shifted).assign(f + 1, labels).flatten().tolist() == [0, 2]
    with pytest.raises(ValueError, match='gt_label'):
        method(s, f, None)
    with pytest.raises(ValueError, match='outside the 2 classes'):
        method.assign(f, torch.tensor([0, 2]))


def test_inserts_keep_the_models_keys_and_change_its_output():
    from mmengine.config import Config
    cfg = Config.fromfile(DIGITS['student'])
    cfg.model.data_preprocessor = dict(type='ClsDataPreprocessor', **cfg.data_preprocessor)
    torch.manual_seed(0)
    plain = build(cfg.model)
    inserts = dict(penult=dict(after='backbone.layer4',
                               module=dict(type='KDLayer', in_channels=32, num_templates=8)))
    torch.manual_seed(0)
    model = build(dict(type='mmkd.StudentWithInserts', model=cfg.model, inserts=inserts))
    assert type(model) is type(plain)  # the plain model itself, no wrapper
    keys = set(model.state_dict())
    assert set(plain.state_dict()) <= keys
    assert {k for k in keys - set(plain.state_dict())} == {
        f'kd_inserts.penult.{k}' for k in model.kd_inserts.penult.state_dict()}
    model.load_state_dict(plain.state_dict(), strict=False)
    x = torch.randn(2, 3, 16, 16)
    model.eval(), plain.eval()
    feats = plain.backbone.layer4(plain.backbone.layer3(plain.backbone.layer2(
        plain.backbone.layer1(plain.backbone.relu(plain.backbone.norm1(
            plain.backbone.conv1(x)))))))
    expected = plain.head.fc(plain.neck(model.kd_inserts.penult(feats)).flatten(1))
    assert torch.allclose(model(x, mode='tensor'), expected, atol=1e-5)
    assert not torch.allclose(model(x, mode='tensor'), plain(x, mode='tensor'))
    # deep copies and pickles carry the inserts (the hook looks them up by name)
    clone = copy.deepcopy(model)
    clone.kd_inserts.penult.alpha = 0.0
    assert torch.allclose(clone(x, mode='tensor'), plain(x, mode='tensor'), atol=1e-5)
    assert torch.allclose(pickle.loads(pickle.dumps(model))(x, mode='tensor'),
                          model(x, mode='tensor'))
    with pytest.raises(KeyError, match=r"inserts.penult: after='backbone.layer9'.*Closest"):
        attach_inserts(build(cfg.model), dict(penult=dict(after='backbone.layer9',
                                                          module='KDLayer')))
    with pytest.raises(KeyError, match=r"exactly the keys \['after', 'module'\]"):
        attach_inserts(build(cfg.model), dict(penult=dict(module='KDLayer')))
    # without a distiller nothing infers the KD layer's channels: it must be stated
    with pytest.raises(ValueError, match=r'inserts.penult: building.*in_channels must be an '
                       r'int >= 1, got None.*StudentWithInserts\) must state it'):
        build_student_with_inserts(cfg.model, dict(penult=dict(after='backbone.layer4',
                                                               module=dict(type='KDLayer'))))


def test_distiller_infers_the_kd_layer_channels_without_changing_the_weights(teacher_ckpts):
    """KDLayer's in_channels left out: the distiller reads them from the stage's output
    (32 after layer4, 16 after layer3); the probe forward's random draw is undone, so the
    weights equal those of a config that states them, and the filled-in inserts are kept."""
    def distiller(**module):
        torch.manual_seed(0)
        inserts = dict(penult=dict(after='backbone.layer4',
                                   module=dict(type='KDLayer', num_templates=8, **module)),
                       inter=dict(after='backbone.layer3',
                                  module=dict(type='KDLayer', num_templates=4)))
        return build(digits_cfg(teacher_ckpts['digits'], student_inserts=inserts, blocks=dict(
            b=dict(student='head.fc', teacher='head.fc', method='LogitKD'))))
    inferred, stated = distiller(), distiller(in_channels=32)
    assert inferred.student_inserts['penult']['module']['in_channels'] == 32
    assert inferred.student_inserts['inter']['module']['in_channels'] == 16
    for (k, a), (_, b) in zip(inferred.state_dict().items(), stated.state_dict().items()):
        assert torch.equal(a, b), k


@pytest.fixture(scope='module')
def teacher_and_templates(tmp_path_factory):
    """A random-weight demo teacher and both templates files made from it by the tool."""
    root = tmp_path_factory.mktemp('letkd')
    ckpt = random_teacher_checkpoint(DIGITS['teacher'], str(root / 'teacher.pth'))
    files = {}
    for name, args in [('penult', ['--point', 'backbone.layer4', '--kind', 'kmeans',
                                   '--num-templates', '64']),
                       ('inter', ['--point', 'backbone.layer4.0', '--kind', 'subclass',
                                  '--num-subclasses', '8', '--lda-components', '9'])]:
        files[name] = str(root / f'{name}.pth')
        out = run_tool([TOOL, DIGITS['teacher'], ckpt, *args, '--out', files[name],
                        '--max-samples', '4000']).stdout
        assert '4000 of 5388 positions kept (128 channels, 2 MiB)' in out, out
    return root, ckpt, files


def test_templates_tool_on_the_demo_teacher(teacher_and_templates, tmp_path):
    from sklearn.cluster import KMeans

    from mmkd.utils.checkpoint import safe_torch_load
    root, ckpt, files = teacher_and_templates
    km = safe_torch_load(files['penult'])
    assert km['kind'] == 'kmeans' and km['centres'].shape == (64, 128)
    assert km['num_samples'] == 4000 and km['point'] == 'backbone.layer4'
    sub = safe_torch_load(files['inter'])
    assert sub['centres'].shape == (80, 9) and sub['score_matrix'].shape == (80, 80)
    assert sub['lda_scalings'].shape == (128, 9) and sub['num_subclasses'] == 8
    assert torch.allclose(sub['score_matrix'].sum(1), torch.ones(80), atol=1e-5)
    # the k-means centres are a stationary point: each is the mean of its nearest samples
    import importlib.util
    spec = importlib.util.spec_from_file_location('letkd_templates', TOOL)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    cfg, model = tool.build_teacher(DIGITS['teacher'], ckpt)
    x, y, seen = tool.collect(model, tool.build_loader(cfg, 64), 'backbone.layer4', 4000, 0,
                              True)
    assert seen == 5388 and x.shape == (4000, 128) and y.shape == (4000, )
    # a uniform draw over the whole pass, in order: a subset of all positions, its tail included
    full, _, _ = tool.collect(model, tool.build_loader(cfg, 64), 'backbone.layer4', None, 0,
                              False)
    assert full.shape == (5388, 128)  # --max-samples all: every position, in order
    where = [int(np.flatnonzero((full == row).all(1))[0]) for row in x[::97]]
    assert where == sorted(where) and (full[-20:] == x[-1]).all(1).any()
    # the default backend is the authors': faiss k-means, 20 iterations, no sub-sampling;
    # deterministic with the seed (the same run as faiss directly) and the recorded objective
    # is the mean squared distance of the samples to their nearest centre
    import faiss
    c = km['centres'].numpy()
    assert km['backend'] == 'faiss'
    direct = faiss.Kmeans(128, 64, niter=20, seed=0, max_points_per_centroid=10_000_000)
    direct.train(np.ascontiguousarray(x))
    assert np.allclose(direct.centroids, c, atol=1e-5)
    d2 = ((x[:, None] - c[None]) ** 2).sum(-1)
    assert np.isclose(d2.min(1).mean(), km['kmeans_objective'], rtol=1e-4)
    # sklearn backend: converged k-means, a stationary point (each centre is the mean of its
    # nearest samples), and the same centres as sklearn directly
    c2, labels, objective = tool.kmeans(x, 64, 0, backend='sklearn')
    nearest = ((x[:, None] - c2[None]) ** 2).sum(-1).argmin(1)
    assert (nearest == labels).mean() > 0.999
    used = np.unique(nearest)
    means = np.stack([x[nearest == k].mean(0) for k in used])
    assert np.allclose(means, c2[used], atol=1e-3)
    again = KMeans(n_clusters=64, n_init=1, random_state=0).fit(x).cluster_centers_
    assert np.allclose(again, c2, atol=1e-5)
    # the file matches the methods that load it (widths checked at build)
    LetKD(files['penult']).build(torch.zeros(1, 64, 2, 2), torch.zeros(1, 128, 2, 2))
    LetKDSubclass(files['inter']).build(torch.zeros(1, 80, 2, 2), torch.zeros(1, 128, 2, 2))


def test_letkd_trains_exports_and_tests_to_identical_predictions(teacher_and_templates,
                                                                 tmp_path):
    """tools/train.py on letKD-2 (1 epoch), extract_student.py writes the weights and the
    config with the inserts, and tools/test.py on that pair dumps exactly the predictions of
    tools/test.py on the distillation checkpoint; the plain base config refuses the weights."""
    root, ckpt, files = teacher_and_templates
    work = tmp_path / 'work'
    opts = [f'model.teacher.checkpoint={ckpt}',
            f'model.blocks.penult.method.templates={files["penult"]}',
            f'model.blocks.inter.method.templates={files["inter"]}']
    out = run_tool(['tools/train.py', LETKD2, '--work-dir', str(work), '--cfg-options',
                    'train_cfg.max_epochs=1', *opts]).stdout
    assert 'distill.penult.loss_letkd' in out and 'distill.inter.loss_letkd' in out, out[-2000:]
    assert 'accuracy/top1' in out
    src = str(work / 'epoch_1.pth')
    dst = str(tmp_path / 'student.pth')
    out = run_tool(['tools/model_converters/extract_student.py', src, dst]).stdout
    assert f'its config to {tmp_path / "student.py"}' in out
    from mmengine.config import Config
    exported = Config.fromfile(str(tmp_path / 'student.py'))
    assert exported.model.type == 'mmkd.StudentWithInserts'
    assert set(exported.model.inserts) == {'penult', 'inter'}
    assert 'teacher' not in str(exported.model)
    # the channels the distiller inferred are stated; no distillation leftovers
    assert exported.model.inserts.penult.module.in_channels == 32
    assert exported.model.inserts.inter.module.in_channels == 32
    for key in ('letkd_templates', 'penult_insert', 'penult_block', 'load_from', 'work_dir'):
        assert key not in exported, key
    assert 'RunRecordHook' not in str(exported.get('custom_hooks'))
    assert exported.get('test_dataloader') and exported.get('test_evaluator')
    preds = {}
    for name, args in dict(distiller=[LETKD2, src, '--cfg-options', *opts],
                           exported=[str(tmp_path / 'student.py'), dst]).items():
        pkl = str(tmp_path / f'{name}.pkl')
        run_tool(['tools/test.py', *args, '--work-dir', str(tmp_path / name), '--out', pkl])
        with open(pkl, 'rb') as f:
            preds[name] = pickle.load(f)
    assert len(preds['exported']) == len(preds['distiller']) == 450
    for a, b in zip(preds['distiller'], preds['exported']):
        assert torch.equal(a['pred_score'], b['pred_score'])
    # the student's plain config would drop the layers: refused, naming the fix
    bad = run_tool(['tools/test.py', DIGITS['student'], dst, '--work-dir',
                    str(tmp_path / 'plain')], check=False)
    assert bad.returncode != 0 and 'inserted layers' in bad.stdout


def test_demo_makes_the_templates_beside_the_teacher_once(teacher_and_templates, tmp_path):
    """tools/demo.py / quality.py: a config's `letkd_templates` are made from the teacher they
    trained (beside its checkpoint, with the run's train_dataloader options) and reused."""
    import shutil
    import sys
    sys.path.insert(0, osp.join(REPO, 'tools'))
    from demo import ensure_templates
    ckpt = str(tmp_path / 'teacher.pth')
    shutil.copy(teacher_and_templates[1], ckpt)
    config = osp.join(DIGITS_DIR, 'letkd-1_resnet34-wide_resnet18-tiny_digits.py')
    opts = ensure_templates(config, ckpt, ['train_dataloader.dataset.tune_fraction=0.2',
                                           'val_dataloader.dataset.split=tune'])
    path = str(tmp_path / 'letkd_penult.pth')
    assert opts == [f'model.blocks.penult.method.templates={path}']
    from mmkd.utils.checkpoint import safe_torch_load
    made = safe_torch_load(path)
    assert made['centres'].shape == (64, 128)
    assert made['num_samples'] == 4 * 1077  # 2x2 positions of the 1,077 non-tune images
    stamp = osp.getmtime(path)
    # the same teacher, arguments and train_dataloader options: reused
    assert ensure_templates(config, ckpt, ['train_dataloader.dataset.tune_fraction=0.2']) == opts
    assert osp.getmtime(path) == stamp


@pytest.mark.parametrize('text,expected', [('all', None), ('4000', 4000), ('0', 'positive'),
                                           ('-5', 'positive'), ('many', "'all' or")])
def test_templates_tool_max_samples_is_all_or_a_positive_count(text, expected):
    import argparse
    import importlib.util
    spec = importlib.util.spec_from_file_location('letkd_templates', TOOL)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    if isinstance(expected, str):
        with pytest.raises(argparse.ArgumentTypeError, match=expected):
            tool.max_samples_arg(text)
    else:
        assert tool.max_samples_arg(text) == expected
