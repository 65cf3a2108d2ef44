"""The AFD authors' per-block features (clovaai/attention-feature-distillation) in mmkd's CIFAR
backbones and configs: WRN features are relu(next BN(block output)), recorded through each
block's ``preact`` and ``final_norm``; ResNet-110 teachers give every second block."""
import copy
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.registry import MODELS as ROOT
from mmengine.registry import DefaultScope

# Importing mmkd (here via mmkd.recorders) registers the CIFAR backbones in mmpretrain.
from mmkd.recorders import ModuleRecorder, StopForward, expand_points, parse_point

from conftest import REPO, random_teacher_checkpoint

WRN_CONFIGS = ['afd_wrn-40-2_wrn-16-2_cifar100.py', 'rtk_wrn-40-2_wrn-16-2_cifar100.py']
R110_CONFIGS = ['afd_resnet110_resnet20_cifar100.py', 'afd_resnet110_resnet32_cifar100.py']


def classifier(backbone, channels):
    from mmpretrain.registry import MODELS
    return MODELS.build(dict(
        type='ImageClassifier', backbone=backbone, neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=10, in_channels=channels)))


def wrn(depth=16, widen_factor=2, seed=0):
    """A WRN classifier whose BNs are not the identity (random affine and running stats)."""
    torch.manual_seed(seed)
    model = classifier(dict(type='CifarWideResNet', depth=depth, widen_factor=widen_factor),
                       64 * widen_factor)
    model.init_weights()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0, 0.5)
            m.running_mean.normal_(0, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return model


def blocks(backbone):
    return [b for i in (1, 2, 3) for b in getattr(backbone, f'layer{i}')]


def config_points(name, side):
    return Config.fromfile(osp.join(REPO, 'configs', 'rtk', name)).model.blocks.blocks[side]


@pytest.mark.parametrize('train', [False, True], ids=['eval', 'train'])
def test_wrn_config_points_record_relu_of_next_bn_of_each_block_output(train):
    model = wrn().train(train)
    backbone = model.backbone
    points = [parse_point(p) for p in expand_points(config_points(WRN_CONFIGS[0], 'student'),
                                                    model)]
    block_names = [f'backbone.layer{i}.{j}' for i in (1, 2, 3) for j in range(2)]
    rec = ModuleRecorder(model, points + [parse_point(n) for n in block_names])
    # The BN that follows each block: the next block's bn1 (across stages too), then final BN.
    next_bns = [b.bn1 for b in blocks(backbone)[1:]] + [backbone.final_norm[0]]
    next_bns = [copy.deepcopy(bn) for bn in next_bns]  # by hand, without touching the model
    x = torch.randn(4, 3, 32, 32)
    rec.start()
    model(x, mode='tensor')  # the whole forward ran: later in-place ops would show here
    rec.finish()
    assert len(points) == 6
    for point, name, bn in zip(points, block_names, next_bns):
        out = rec.get(parse_point(name))
        expected = F.relu(bn(out))  # bn in the model's mode: batch statistics when training
        assert torch.equal(rec.get(point), expected), (point, name)
        assert not torch.equal(rec.get(point), out)  # not the block's raw residual sum


def reference_wrn_forward(backbone, x):
    """The WRN forward written out from the published block (BN-ReLU-conv-BN-ReLU-conv +
    shortcut on the pre-activated input), calling the model's own layers."""
    x = backbone.stem(x)
    for b in blocks(backbone):
        pre = F.relu(b.bn1(x))
        out = b.conv2(b.dropout(F.relu(b.bn2(b.conv1(pre)))))
        x = out + (x if b.shortcut is None else b.shortcut(pre))
    return F.relu(backbone.final_norm[0](x))


@pytest.mark.parametrize('train', [False, True], ids=['eval', 'train'])
def test_wrn_outputs_and_state_dict_keys_are_the_plain_blocks(train):
    model = wrn().train(train)
    reference = copy.deepcopy(model)
    x = torch.randn(4, 3, 32, 32)
    assert torch.equal(model.backbone(x)[0], reference_wrn_forward(reference.backbone, x))
    # Same BN statistics after the step: bn1 ran once per block, as before.
    for (name, a), b in zip(model.state_dict().items(), reference.state_dict().values()):
        assert torch.equal(a, b), name

    bn = ['weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked']
    expected = ['stem.weight']
    for i in (1, 2, 3):
        for j in range(2):
            p = f'layer{i}.{j}.'
            expected += [p + 'bn1.' + k for k in bn] + [p + 'conv1.weight']
            expected += [p + 'bn2.' + k for k in bn] + [p + 'conv2.weight']
            if j == 0:  # 16 -> 32, 32 -> 64 and 64 -> 128 channels: 1x1 shortcut
                expected.append(p + 'shortcut.weight')
    expected += ['final_norm.0.' + k for k in bn]
    assert list(model.backbone.state_dict()) == expected


@pytest.mark.parametrize('name', WRN_CONFIGS)
def test_wrn_configs_give_the_authors_number_of_features(name):
    # Authors' utils.py: LAYER['wrn40x2'] = arange(1, 19), LAYER['wrn16x2'] = arange(1, 7) over
    # [bn1 of each block's input] * 3n + [final BN, pooled]: index k is block k-1's feature.
    for side, depth, count in (('teacher', 40, 18), ('student', 16, 6)):
        n = (depth - 4) // 6
        model = wrn(depth=depth)
        points = expand_points(config_points(name, side), model)
        expected = [f'backbone.layer{i}.{j}.preact' for i in (1, 2, 3) for j in range(n)][1:]
        assert [parse_point(p).module for p in points] == expected + ['backbone.final_norm']
        assert len(points) == count


def build_with_random_teacher(name, tmp_path):
    """As tests/test_configs.py builds configs: a random-weight teacher checkpoint."""
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'rtk', name))
    model = cfg.model
    model.teacher.checkpoint = random_teacher_checkpoint(model.teacher.config,
                                                         str(tmp_path / 'teacher.pth'))
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        return ROOT.build(model)


@pytest.mark.parametrize('name,num_student', [(R110_CONFIGS[0], 9), (R110_CONFIGS[1], 15)])
def test_resnet110_configs_record_every_second_teacher_block(name, num_student, tmp_path):
    distiller = build_with_random_teacher(name, tmp_path)
    block = distiller.blocks['blocks']
    # Authors' LAYER['resnet110'] = arange(2, 55, 2) over [stem] + 54 block outputs: feature
    # k is block k - 1 counted over all stages (18 per stage).
    expected = [f'backbone.layer{(k - 1) // 18 + 1}.{(k - 1) % 18}' for k in range(2, 55, 2)]
    assert [p.module for _, p in block.teacher_points] == expected
    assert len(block.student_points) == num_student
    # The dry run recorded 27 teacher maps and sized AFD from them.
    method = distiller.methods['blocks']
    assert len(method.query_layers) == 27 and len(method.key_layers) == num_student
    x = torch.randn(2, 3, 32, 32)
    rec = distiller.teacher_recorder
    rec.start()
    try:
        distiller.teacher(x, mode='tensor')
    except StopForward:  # the recorder ends the forward after its last point
        pass
    rec.finish()
    values = [rec.get(p) for _, p in block.teacher_points]
    assert len(values) == 27 and all(v.shape[0] == 2 and v.dim() == 4 for v in values)
