"""Maps of other strides and zoo backbones on the demo data (issue 29, items 6 and 7).

- AFD/RTK resize student maps by adaptive average pooling, which repeats values when the
  student's map is the smaller one; the build warns once when a layer can only be matched so.
- docs/multi_teacher.md's reverse direction (an mmdet student, an mmseg teacher) trains as
  written, and reading ``'backbone.layer*'`` on both sides instead warns once.
- ``mmkd.DigitsDataset`` upscales the demo's digits (``img_size`` with ``draw_size``), and
  configs/demo/digits/zoo distils a ConvNeXt-V2 into a MobileNetV3 on them.
"""
import json
import logging
import os.path as osp
import re

import numpy as np
import pytest
import torch
from mmengine.config import Config

import mmkd.methods.attention_kd as attention_kd
from mmkd.datasets import DigitsDataset
from mmkd.methods import AFD, RTK, spatial_attention_map

from conftest import (DEMO, DIGITS, REPO, assert_blocks_logged, random_teacher_checkpoint,
                      run_tool, shapes_options)

ZOO = osp.join(DEMO, 'digits', 'zoo')
ZOO_DISTILL = osp.join(ZOO, 'dkd-cwd_convnext-v2-atto_mobilenet-v3-small_digits-64.py')
ZOO_TEACHER = osp.join(ZOO, 'convnext-v2-atto_digits-64.py')
REVERSE_HEADING = '## The reverse direction: an mmdet student, an mmseg teacher'


def maps(n, channels, sizes):
    return [torch.randn(n, c, s, s) for c, s in zip(channels, sizes)]


@pytest.fixture
def warnings_logged(monkeypatch):
    logged = []
    monkeypatch.setattr(attention_kd, 'print_log',
                        lambda msg, **kw: logged.append((msg, kw.get('level'))))
    return logged


def test_adaptive_pooling_repeats_values_and_layers_matched_only_so_are_found():
    """What the docs say: a smaller student map is enlarged by copying each value into a
    block (nearest-neighbour style), a larger one averaged over windows; a query layer whose
    every pair is enlarged so is found (RTK's student queries, AFD's teacher queries)."""
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).sqrt().view(1, 1, 2, 2)  # mean_c(f^2) = 1..4
    up = spatial_attention_map(x, (4, 4)).view(4, 4)
    assert torch.allclose(up, up[::2, ::2].repeat_interleave(2, 0).repeat_interleave(2, 1))
    assert len(torch.unique(up)) == 4
    big = torch.rand(1, 1, 8, 8)
    down = spatial_attention_map(big, (4, 4))
    pooled = torch.nn.functional.avg_pool2d(big.pow(2), 2).flatten(1)
    assert torch.allclose(down, torch.nn.functional.normalize(pooled, dim=1))
    find = attention_kd.layers_matched_by_upsampling
    student, teacher = maps(1, (4, 4, 4), (16, 4, 2)), maps(1, (4, 4), (8, 4))
    assert find(student, teacher, 'student') == [2]  # 2x2 is smaller than 8x8 and 4x4
    assert find(student, teacher, 'teacher') == []  # the 16x16 student map suits both
    assert find(student[1:], teacher, 'teacher') == [0]  # 8x8: only 4x4 and 2x2 students
    wide = [torch.randn(1, 4, 8, 2)]  # larger in height, smaller in width: upsampled too
    assert find(wide, teacher, 'student') == [0]


@pytest.mark.parametrize('method', [RTK, AFD])
def test_build_warns_once_when_a_layer_is_only_matched_by_upsampling(method, warnings_logged):
    # the reverse direction: RetinaNet R-18 stages against a dilated (output stride 8) teacher
    student = maps(2, (16, 32, 64, 128), (16, 8, 4, 2))
    teacher = maps(2, (32, 64, 128, 256), (16, 8, 8, 8))
    if method is AFD:  # AFD's queries are the teacher layers: larger than every student map
        student = student[2:]
    m = method()
    m.build(student, teacher)
    m.build(student, teacher)  # built again: still one warning per method instance
    assert len(warnings_logged) == 1, warnings_logged
    text, level = warnings_logged[0]
    assert level == logging.WARNING
    assert text.startswith(f'{method.__name__}: ')
    assert 'upsampled by adaptive average pooling' in text and 'repeats each value' in text
    assert str([tuple(s.shape) for s in student]) in text  # both sides' shapes
    assert str([tuple(t.shape) for t in teacher]) in text
    assert 'Record points of matching stride' in text  # and what to do
    assert m(student, teacher)[m.loss_name].isfinite()  # a warning, not an error
    method().build(student, teacher)  # another instance warns on its own
    assert len(warnings_logged) == 2


@pytest.mark.parametrize('s_sizes, t_sizes', [
    ((16, 8, 4, 2), (16, 8, 4, 2)),  # the same strides (some pairs upsample: AFD's design)
    ((32, 16, 8), (32, 16, 8)),  # the authors' CIFAR WRN stages
    ((16, 8), (8, 8, 8)),  # the reverse-direction example: student as fine or finer
    ((16, 8, 8, 8), (16, 8, 4, 2)),  # rtk-det: a dilated student, an FPN teacher
])
def test_build_does_not_warn_when_every_layer_has_a_match_at_its_stride(s_sizes, t_sizes,
                                                                        warnings_logged):
    for method in (RTK, AFD):
        student = maps(2, [8] * len(s_sizes), s_sizes)
        teacher = maps(2, [8] * len(t_sizes), t_sizes)
        method().build(student, teacher)
    assert warnings_logged == []


def digits(dataset_cfg, **overrides) -> DigitsDataset:
    """A DigitsDataset from a config's ``dataset`` dict."""
    return DigitsDataset(**{k: v for k, v in dataset_cfg.items() if k != 'type'}, **overrides)


def test_digits_upscale_gives_images_of_the_asked_size_through_the_pipeline():
    from mmkd.datasets.digits import check_pipeline_crops, resize_image
    cfg = Config.fromfile(osp.join(ZOO, '_base_digits-64.py'))
    size = cfg.img_size
    # one variable: the dataset, the crop and its padding read it
    assert cfg.train_dataloader.dataset.img_size == size == 64
    assert cfg.train_pipeline[0].crop_size == size and cfg.train_pipeline[0].padding == size // 8
    assert Config.fromfile(ZOO_DISTILL).model.dry_run_input_shape == (2, 3, size, size)
    train = digits(cfg.train_dataloader.dataset, indices=4)
    assert all(tuple(train[i]['inputs'].shape) == (3, size, size) for i in range(4))
    # the demo's very digits (drawn and distorted at 16x16), only larger
    test = digits(cfg.val_dataloader.dataset, indices=3)
    demo = Config.fromfile(DIGITS['student']).val_dataloader.dataset
    assert demo.distortion == cfg.distortion and demo.img_size == cfg.draw_size
    small = digits(demo, indices=3)
    for i in range(3):
        big = test[i]['inputs'].permute(1, 2, 0).numpy()
        assert np.array_equal(big, resize_image(small.get_data_info(i)['img'], size))
        assert test[i]['data_samples'].gt_label == small[i]['data_samples'].gt_label
    # any asked size, through the pipeline
    odd = DigitsDataset(split='test', img_size=48, draw_size=16, indices=2, pipeline=[
        dict(type='RandomCrop', crop_size=48, padding=6), dict(type='PackInputs')])
    assert tuple(odd[0]['inputs'].shape) == (3, 48, 48)
    # a crop left at the old size is reported, naming the setting
    problems = check_pipeline_crops([dict(type='RandomCrop', crop_size=16, padding=2)], 64)
    assert len(problems) == 1 and 'crop_size' in problems[0] and 'img_size=64' in problems[0]
    assert check_pipeline_crops(cfg.train_pipeline, size) == []


def reverse_direction_config(tmp_path):
    """docs/multi_teacher.md's reverse-direction config, as written (its ``_base_`` made
    absolute: the docs save it in a folder of the clone, the test in a temporary one)."""
    with open(osp.join(REPO, 'docs', 'multi_teacher.md')) as f:
        doc = f.read()
    section = doc[doc.index(REVERSE_HEADING):]
    text = re.search(r'```python\n(.*?)```', section, re.S).group(1)
    assert "_base_ = '../configs/" in text
    text = text.replace("'../configs/", "'" + osp.join(REPO, 'configs') + '/')
    path = tmp_path / 'rtk-seg_retinanet_r18-tiny_fpn_shapes.py'
    path.write_text(text)
    # the same with 'backbone.layer*' on both sides of the segmentation block
    naive = re.sub(r"seg_stages=dict\(student=\[.*?\],\s*teacher=\[.*?\],",
                   "seg_stages=dict(student='backbone.layer*', teacher='seg:backbone.layer*',",
                   text, flags=re.S)
    assert naive != text
    naive_path = tmp_path / 'naive.py'
    naive_path.write_text(naive)
    return str(path), str(naive_path)


def run_section(out, i):
    part = re.search(rf'@@ run {i} begin\n(.*?)@@ run {i} (ok|failed)\n', out, re.S)
    assert part is not None and part.group(2) == 'ok', (part.group(1) if part else out)[-4000:]
    return part.group(1)


def test_reverse_direction_and_zoo_examples_train_a_few_iterations(tmp_path, shapes_root,
                                                                   teacher_ckpts):
    """Through tools/train.py, in one process (tests/train_in_sequence.py): the docs' mmdet
    student with an mmdet and an mmseg teacher, its variant with stages of other strides
    (warned once, at build), and the zoo example on the upscaled digits; random teachers."""
    reverse, naive = reverse_direction_config(tmp_path)
    zoo_teacher = random_teacher_checkpoint(ZOO_TEACHER, str(tmp_path / 'convnext.pth'))
    runs = []
    for i, path in enumerate((reverse, naive)):
        runs.append([path, '--work-dir', str(tmp_path / str(i)), '--cfg-options',
                     f'model.teachers.det.checkpoint={teacher_ckpts["det"]}',
                     f'model.teachers.seg.checkpoint={teacher_ckpts["seg"]}',
                     *shapes_options(shapes_root, det=True), 'default_hooks.logger.interval=1',
                     'train_cfg.max_iters=2', 'train_cfg.val_interval=2'])
    runs.append([ZOO_DISTILL, '--work-dir', str(tmp_path / 'zoo'), '--cfg-options',
                 f'model.teacher.checkpoint={zoo_teacher}', 'default_hooks.logger.interval=1',
                 'train_cfg.max_epochs=1', 'train_dataloader.dataset.indices=32',
                 'train_dataloader.batch_size=16', 'val_dataloader.dataset.indices=16'])
    (tmp_path / 'runs.json').write_text(json.dumps(runs))
    out = run_tool(['tests/train_in_sequence.py', str(tmp_path / 'runs.json')],
                   check=False).stdout
    warning = re.compile(r'WARNING - (RTK|AFD): ')
    sections = [run_section(out, i) for i in range(3)]
    assert_blocks_logged(reverse, sections[0])
    assert not warning.search(sections[0])  # strides matched: nothing upsampled
    assert len(warning.findall(sections[1])) == 1, sections[1][-3000:]
    assert 'student maps {2: 4x4, 3: 2x2} are smaller' in sections[1]
    assert_blocks_logged(ZOO_DISTILL, sections[2])
    assert re.search(r'Epoch\(train\) +\[1\]\[2/2\]', sections[2])
    assert 'accuracy/top1' in sections[2]  # and it validates
