"""RKIQT's parts (issue 14, part 3 and 5): the non-aligned reference reaches its teacher and
never the student; the stacked teacher view; the reference pool; the NAR backbone; MGD on ViT
tokens; quality-score distillation; the demo distillation configs through tools/train.py."""
import copy
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config

import mmkd  # noqa: F401
from mmkd.distillers import Normalisation
from mmkd.distillers.teachers import TeacherView
from mmkd.methods import MGD, QualityKD

from conftest import REPO, build, random_teacher_checkpoint, run_tool

IQA = osp.join(REPO, 'configs', 'demo', 'iqa')
NAR = osp.join(IQA, 'nar-resnet18-tiny_synthetic-iqa.py')
MGD_CFG = osp.join(IQA, 'mgd_nar-resnet18-tiny_civt-tiny_synthetic-iqa.py')
RKIQT = osp.join(IQA, 'rkiqt_nar+resnet18-tiny+rednet-tiny_civt-tiny_synthetic-iqa.py')


def iqa_samples(n, refs=None):
    from mmpretrain.structures import DataSample
    samples = []
    for i in range(n):
        s = DataSample(metainfo=dict(img_shape=(32, 32)))
        s.set_field(torch.tensor([0.1 * i]), 'gt_score')
        if refs is not None:
            s.set_field(refs[i], 'nar_img')
        samples.append(s)
    return samples


def test_stacked_view_concatenates_raw_sources_in_load_order():
    student = Normalisation([1.0, 2.0, 3.0], [2.0, 2.0, 2.0], flip_channels=True)
    teacher = Normalisation(list(range(6)), [4.0] * 6)
    view = TeacherView(student, teacher, ['inputs', 'nar_img'], 'nar')
    raw = torch.randint(0, 256, (2, 3, 8, 8)).float()
    ref = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    x_s = student.normalise(raw)  # flipped to RGB, then normalised
    out = view(x_s, iqa_samples(2, ref))
    expected = (torch.cat([raw, ref.float()], 1) - torch.arange(6.).view(1, 6, 1, 1)) / 4.0
    assert out.shape == (2, 6, 8, 8)
    assert torch.allclose(out, expected, atol=1e-4)
    assert view.fields == ['nar_img']
    # the flip applies to 3-channel inputs only, as in OpenMMLab's preprocessors
    assert Normalisation(flip_channels=True).flips(raw)
    assert not Normalisation(flip_channels=True).flips(torch.cat([raw, raw], 1))
    with pytest.raises(ValueError, match='one spatial size'):
        view(x_s, iqa_samples(2, torch.zeros(2, 3, 4, 4, dtype=torch.uint8)))


@pytest.fixture(scope='module')
def rkiqt_ckpts(tmp_path_factory):
    root = tmp_path_factory.mktemp('iqa_teachers')
    return {name: random_teacher_checkpoint(osp.join(IQA, f'{cfg}_synthetic-iqa.py'),
                                            str(root / f'{name}.pth'))
            for name, cfg in dict(nar='nar-resnet18-tiny', cnn='resnet18-tiny',
                                  inv='rednet-tiny').items()}


def rkiqt_model(ckpts):
    cfg = Config.fromfile(RKIQT)
    model = copy.deepcopy(cfg.model)
    for name, path in ckpts.items():
        model.teachers[name].checkpoint = path
    model.student.data_preprocessor = dict(type='ClsDataPreprocessor', **cfg.data_preprocessor)
    return model


def test_reference_reaches_its_teacher_and_never_the_student(rkiqt_ckpts):
    d = build(rkiqt_model(rkiqt_ckpts))
    assert d.privileged_fields == ['nar_img']
    seen_teacher, seen_student = [], []
    nar = d.teachers['nar']
    nar.backbone.register_forward_pre_hook(lambda m, a: seen_teacher.append(a[0]))
    original = d.student.forward

    def spy(inputs, data_samples=None, mode='tensor'):
        seen_student.append((inputs, data_samples))
        return original(inputs, data_samples, mode=mode)

    d.student.forward = spy
    raw = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    refs = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    samples = iqa_samples(4, refs)
    batch = d.data_preprocessor(dict(inputs=list(raw), data_samples=samples), True)
    losses = d(batch['inputs'], batch['data_samples'], mode='loss')
    assert {'distill.mcd.loss_mgd', 'distill.conv.loss_quality_kd'} <= set(losses)
    # The teacher got [distorted | reference], normalised by its own preprocessor.
    expected = Normalisation.of_preprocessor(nar.data_preprocessor).normalise(
        torch.cat([raw, refs], 1).float())
    assert torch.allclose(seen_teacher[-1], expected, atol=1e-4)
    # The student: the batch only, and samples without the reference (fails if it leaks).
    for inputs, student_samples in seen_student:
        assert inputs.shape[1] == 3
        assert all('nar_img' not in s for s in student_samples)
        assert all('gt_score' in s for s in student_samples)
        assert not any(torch.equal(inputs[i], expected[i, 3:]) for i in range(4))
    assert all('nar_img' in s for s in samples)  # the teacher's copy is untouched
    d.eval()
    preds = d(batch['inputs'], batch['data_samples'], mode='predict')
    assert all('nar_img' not in p and p.pred_score.shape == (1, ) for p in preds)


def test_non_aligned_references_come_from_training_content_only(tmp_path):
    from mmkd.datasets import SyntheticIQADataset
    root = str(tmp_path / 'iqa')
    kw = dict(crop_size=16, tune_fraction=0.2, non_aligned_refs='train', serialize_data=False)
    train = SyntheticIQADataset(root, split='train', **kw)
    test = SyntheticIQADataset(root, split='test', **kw)
    train_refs = {osp.basename(p) for p, _ in train.nar_pool}
    assert {c for _, c in test.nar_pool} <= set(train.contents['train'])
    assert not {c for _, c in test.nar_pool} & set(test.contents['test'])
    for ds in (train, test):
        for i in range(0, len(ds), 37):
            info = ds.get_data_info(i)
            ref = osp.basename(info['nar_path'])
            assert ref in train_refs and not ref.startswith(info['content'] + '_')
    # test draws are fixed; training draws vary
    assert [test.get_data_info(i)['nar_path'] for i in range(5)] == \
        [test.get_data_info(i)['nar_path'] for i in range(5)]
    assert len({train.get_data_info(0)['nar_path'] for _ in range(20)}) > 1
    with pytest.raises(FileNotFoundError, match='non_aligned_refs folder'):
        SyntheticIQADataset(root, split='test', crop_size=16,
                            non_aligned_refs=str(tmp_path / 'none')).full_init()


def test_stack_images_and_nar_backbone():
    from mmpretrain.registry import MODELS

    from mmkd.datasets import StackImages
    img = np.random.randint(0, 255, (8, 8, 3), np.uint8)
    ref = np.random.randint(0, 255, (4, 4, 3), np.uint8)
    out = StackImages(['img', 'nar_img'])(dict(img=img, nar_img=ref))
    assert out['img'].shape == (8, 8, 6) and np.array_equal(out['img'][..., :3], img)
    with pytest.raises(KeyError, match="no 'nar_img'"):
        StackImages(['img', 'nar_img'])(dict(img=img))
    torch.manual_seed(0)
    nar = MODELS.build(dict(type='NonAlignedReferenceBackbone', fuse='concat',
                            backbone=dict(type='ResNet_CIFAR', depth=18, stem_channels=4,
                                          base_channels=4))).eval()
    x = torch.randn(2, 6, 16, 16)
    (out, ) = nar(x)
    f_lq, f_hq = nar.backbone(x[:, :3])[-1], nar.backbone(x[:, 3:])[-1]
    assert torch.allclose(out, torch.cat([f_lq, f_hq - f_lq], 1), atol=1e-5)
    # same image as reference: zero difference
    (same, ) = nar(torch.cat([x[:, :3], x[:, :3]], 1))
    assert same[:, 32:].abs().max() == 0
    with pytest.raises(ValueError, match=r'expects \(N, 6, H, W\)'):
        nar(torch.randn(2, 3, 16, 16))


def test_mgd_on_vit_tokens_and_quality_kd():
    torch.manual_seed(0)
    tokens = torch.randn(2, 3 + 16, 8)
    grid = MGD.tokens_to_map(tokens, 3)
    assert grid.shape == (2, 8, 4, 4)
    assert torch.equal(grid[1, :, 1, 2], tokens[1, 3 + 1 * 4 + 2])
    with pytest.raises(ValueError, match='not a square grid'):
        MGD.tokens_to_map(tokens, 2)
    mgd = MGD(preset='segmentation', skip_tokens=3)
    teacher = torch.randn(2, 12, 2, 2)
    mgd.build([tokens], [teacher])
    assert mgd(tokens, teacher)['loss_mgd'] > 0
    kd = QualityKD()
    s, t = torch.rand(4, 1, requires_grad=True), torch.rand(4, 1)
    kd.build([s], [t])
    loss = kd(s, t)['loss_quality_kd']
    assert torch.allclose(loss, (s - t).abs().mean())
    loss.backward()
    assert torch.allclose(s.grad, torch.sign(s - t).detach() / 4)
    with pytest.raises(ValueError, match='equal shapes'):
        QualityKD().build([s], [torch.rand(4, 2)])


def test_rkiqt_demo_configs_train_through_tools_train(tmp_path, rkiqt_ckpts):
    """MGD-only, ibt-only and full RKIQT, a few iterations each, random teachers."""
    import json
    root = str(tmp_path / 'data')
    runs = []
    for name in ('mgd_nar-resnet18-tiny_civt-tiny', 'ibt_resnet18-tiny+rednet-tiny_civt-tiny',
                 'rkiqt_nar+resnet18-tiny+rednet-tiny_civt-tiny'):
        config = osp.join(IQA, f'{name}_synthetic-iqa.py')
        teachers = Config.fromfile(config).model.teachers
        runs.append([config, '--work-dir', str(tmp_path / name), '--cfg-options',
                     f'train_dataloader.dataset.data_root={root}',
                     f'val_dataloader.dataset.data_root={root}',
                     'train_dataloader.dataset.indices=64', 'val_dataloader.dataset.indices=32',
                     'train_cfg.max_epochs=1', 'default_hooks.logger.interval=1',
                     *[f'model.teachers.{t}.checkpoint={rkiqt_ckpts[t]}' for t in teachers]])
    spec = tmp_path / 'runs.json'
    spec.write_text(json.dumps(runs))
    out = run_tool(['tests/train_in_sequence.py', str(spec)]).stdout
    assert all(f'@@ run {i} ok' in out for i in range(3)), out[-3000:]
    assert 'distill.mcd.loss_mgd' in out and 'distill.inv.loss_quality_kd' in out
    assert out.count('iqa/srcc: ') >= 3
