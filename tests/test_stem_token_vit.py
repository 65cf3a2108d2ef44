"""The stem-token ViT (VkD's DeiT student) and its multi-token head, and the VkD ImageNet
configs that use them: shapes, the distillation token's definition, the test-time average,
where each loss's gradient goes, checkpoints, a second stem, and the configs' wiring."""
import copy
import os.path as osp

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.config import Config

from mmkd.models import ConvPatchStem, MultiTokenClsHead, StemTokenViT  # registers them

from conftest import DIGITS, REPO, batch, build, random_teacher_checkpoint, run_tool

TINY_ARCH = dict(embed_dims=16, num_layers=2, num_heads=2, feedforward_channels=32)
VKD = osp.join(REPO, 'configs', 'vkd', 'vkd_deit-tiny_regnety-160_in1k.py')
PLAIN = osp.join(REPO, 'configs', 'vkd', 'vkd_deit-tiny-plain_regnety-160_in1k.py')
STUDENT = osp.join(REPO, 'configs', 'vkd', 'deit-tiny-convstem_in1k.py')


def tiny_backbone(**kwargs) -> StemTokenViT:
    cfg = dict(arch=TINY_ARCH, img_size=32,
               stems=[dict(name='conv', type='ConvPatchStem', channels=8)])
    cfg.update(kwargs)
    return StemTokenViT(**cfg)


def tiny_classifier(num_classes=10, backbone=None, **head):
    head_cfg = dict(type='MultiTokenClsHead', num_classes=num_classes, in_channels=16)
    head_cfg.update(head)
    return build(dict(
        type='ImageClassifier',
        backbone=backbone or dict(type='StemTokenViT', arch=TINY_ARCH, img_size=32,
                                  stems=[dict(name='conv', type='ConvPatchStem', channels=8)]),
        neck=None, head=head_cfg))


def encoder_input(backbone, x):
    """What the first transformer layer receives (the embedded sequence), via a hook."""
    seen = {}

    def hook(module, args):  # returns None: the input is not replaced
        seen['x'] = args[0].detach().clone()

    handle = backbone.layers[0].register_forward_pre_hook(hook)
    backbone(x)
    handle.remove()
    return seen['x']


def test_tiny_shapes_and_outputs():
    torch.manual_seed(0)
    vit = tiny_backbone()
    vit.init_weights()
    vit.eval()
    x = torch.randn(3, 3, 32, 32)
    assert vit.patch_resolution == (2, 2)  # 32 / (2 * 8)
    assert vit.token_names == ('cls', 'dist') and vit.num_extra_tokens == 2
    assert vit.pos_embed.shape == (1, 2 + 4, 16)
    recorded = {}
    handle = vit.ln1.register_forward_hook(lambda m, i, o: recorded.update(ln1=o))
    (tokens, ) = vit(x)
    handle.remove()
    assert tokens.shape == (3, 2, 16)  # 'extra_tokens': cls, dist
    assert recorded['ln1'].shape == (3, 6, 16)  # what a distiller records: all tokens
    torch.testing.assert_close(tokens, recorded['ln1'][:, :2])
    vit.out_type = 'raw'
    torch.testing.assert_close(vit(x)[0], recorded['ln1'])
    vit.out_type = 'featmap'
    fmap = vit(x)[0]
    assert fmap.shape == (3, 16, 2, 2)
    torch.testing.assert_close(fmap.flatten(2).transpose(1, 2), recorded['ln1'][:, 2:])
    # Another input size: the position embedding is interpolated to the 4x4 grid.
    vit.out_type = 'raw'
    assert vit(torch.randn(2, 3, 64, 64))[0].shape == (2, 2 + 16, 16)
    # Two outputs when asked: every layer, extra tokens only.
    two = tiny_backbone(out_indices=(0, 1))
    assert [o.shape for o in two(x)] == [(3, 2, 16), (3, 2, 16)]


def test_conv_stem_is_the_authors_conv_embed():
    """Same layers, module names and output as roymiles/vkd's conv_embed (built here by hand):
    7x7/2 3->64 no bias, BN, ReLU, 2 x (3x3 64->64 no bias, BN, ReLU), 8x8/8 proj with bias."""
    torch.manual_seed(0)
    stem = ConvPatchStem(embed_dims=192)
    stem.init_weights()
    conv = nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False), nn.BatchNorm2d(64),
        nn.ReLU(True), nn.Conv2d(64, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64),
        nn.ReLU(True), nn.Conv2d(64, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64),
        nn.ReLU(True))
    reference = nn.ModuleDict(dict(conv=conv, proj=nn.Conv2d(64, 192, kernel_size=8, stride=8)))
    reference.load_state_dict(stem.state_dict(), strict=True)  # names and shapes agree
    x = torch.randn(2, 3, 224, 224)
    out = stem(x)
    assert out.shape == (2, 192, 14, 14)
    torch.testing.assert_close(out, reference['proj'](reference['conv'](x)))
    # Authors' init: kaiming_normal_ (fan_in, gain sqrt 2) on every conv weight.
    for m, fan_in in ((stem.conv[0], 3 * 49), (stem.conv[3], 64 * 9), (stem.proj, 64 * 64)):
        assert abs(m.weight.std().item() / (2 / fan_in) ** 0.5 - 1) < 0.1


def test_dist_token_is_the_mean_of_patch_embeddings_before_position_embedding():
    torch.manual_seed(0)
    vit = tiny_backbone()
    vit.init_weights()
    vit.eval()
    x = torch.randn(2, 3, 32, 32)
    seq = encoder_input(vit, x)
    fmap = vit.stems['conv'](x)  # (N, D, 2, 2)
    n, d = fmap.shape[:2]
    hand_mean = sum(fmap[:, :, i, j] for i in range(2) for j in range(2)) / 4
    pos = vit.pos_embed[0].detach()
    torch.testing.assert_close(seq[:, 1], hand_mean + pos[1])
    torch.testing.assert_close(seq[:, 0], vit.cls_token[0, 0].detach().expand(n, d) + pos[0])
    torch.testing.assert_close(seq[:, 2:], fmap.flatten(2).transpose(1, 2) + pos[2:])
    # It is computed from the image, not learned: no dist parameter exists.
    assert not [k for k in vit.state_dict() if 'dist' in k]
    # Position embedding added after the mean: shifting it moves the token by exactly that.
    with torch.no_grad():
        vit.pos_embed[0, 2:] += 5.0
    torch.testing.assert_close(encoder_input(vit, x)[:, 1], hand_mean + pos[1])


def test_predict_averages_the_heads_exactly():
    torch.manual_seed(0)
    head = MultiTokenClsHead(num_classes=5, in_channels=16)
    head.init_weights()
    feats = (torch.randn(4, 2, 16), )
    l_cls = feats[0][:, 0] @ head.heads['cls'].weight.t() + head.heads['cls'].bias
    l_dist = feats[0][:, 1] @ head.heads['dist'].weight.t() + head.heads['dist'].bias
    expected = (l_cls + l_dist) / 2
    assert torch.equal(head(feats), expected)
    scores = torch.stack([s.pred_score for s in head.predict(feats)])
    assert torch.equal(scores, F.softmax(expected, dim=1))
    assert torch.equal(head.forward_tokens(feats)['dist'], l_dist)
    weighted = MultiTokenClsHead(num_classes=5, in_channels=16,
                                 predict_weights=dict(cls=3.0, dist=1.0))
    weighted.load_state_dict(head.state_dict())
    torch.testing.assert_close(weighted(feats), (3 * l_cls + l_dist) / 4)
    only_cls = MultiTokenClsHead(num_classes=5, in_channels=16, predict_weights=dict(cls=1.0))
    only_cls.load_state_dict(head.state_dict())
    assert torch.equal(only_cls(feats), l_cls)


def test_head_loss_weights_and_errors():
    torch.manual_seed(0)
    head = MultiTokenClsHead(num_classes=5, in_channels=16,
                             loss_weights=dict(cls=0.5, dist=0.25))
    feats = (torch.randn(4, 2, 16), )
    _, samples = batch(n=4, num_classes=5)
    target = torch.tensor([s.gt_label.item() for s in samples])
    logits = head.forward_tokens(feats)
    losses = head.loss(feats, samples)
    assert set(losses) == {'loss_cls', 'loss_dist'}
    torch.testing.assert_close(losses['loss_cls'], 0.5 * F.cross_entropy(logits['cls'], target))
    torch.testing.assert_close(losses['loss_dist'],
                               0.25 * F.cross_entropy(logits['dist'], target))
    with pytest.raises(ValueError, match=r"\['conv'\] are not tokens; choose from"):
        MultiTokenClsHead(num_classes=5, in_channels=16, loss_weights=dict(conv=1.0))
    with pytest.raises(ValueError, match=r'expects \(N, 2, D\) extra tokens'):
        head((torch.randn(4, 3, 16), ))


def test_ce_reaches_only_the_class_head_and_kd_on_the_dist_head_reaches_the_backbone(
        tmp_path):
    """Through the distiller, as the VkD config wires it: the student's CE (class head) and a
    logit-KD block reading ``head.heads.dist``."""
    torch.manual_seed(0)
    teacher_ckpt = random_teacher_checkpoint(DIGITS['teacher'], str(tmp_path / 't.pth'))
    student = dict(
        type='ImageClassifier',
        backbone=dict(type='StemTokenViT', arch=TINY_ARCH, img_size=16,
                      stems=[dict(name='conv', type='ConvPatchStem', channels=8,
                                  first_stride=1, num_convs=1, patch_size=4)]),
        neck=None,
        head=dict(type='MultiTokenClsHead', num_classes=10, in_channels=16),
        data_preprocessor=dict(type='ClsDataPreprocessor', num_classes=10))
    distiller = build(dict(
        type='mmkd.Distiller', student=student,
        teacher=dict(config=DIGITS['teacher'], checkpoint=teacher_ckpt),
        blocks=dict(logits=dict(student='head.heads.dist', teacher='head.fc',
                                method=dict(type='LogitKD', tau=1.0))),
        dry_run_input_shape=(2, 3, 16, 16)))
    distiller.train()
    inputs, samples = batch(n=4, size=16)
    losses = distiller.loss(inputs, samples)
    assert set(losses) == {'student.loss_cls', 'distill.logits.loss_kd',
                           'distill.logits.weight'}
    s = distiller.student
    stem_w = s.backbone.stems['conv'].conv[0].weight

    losses['student.loss_cls'].backward(retain_graph=True)
    assert s.head.heads['dist'].weight.grad is None
    assert s.head.heads['cls'].weight.grad.abs().sum() > 0
    assert stem_w.grad.abs().sum() > 0
    distiller.zero_grad(set_to_none=True)

    losses['distill.logits.loss_kd'].backward()
    assert s.head.heads['cls'].weight.grad is None
    assert s.head.heads['dist'].weight.grad.abs().sum() > 0
    assert stem_w.grad.abs().sum() > 0
    assert s.backbone.layers[0].attn.qkv.weight.grad.abs().sum() > 0


def test_state_dict_round_trip():
    torch.manual_seed(0)
    a = tiny_classifier()
    a.init_weights()
    torch.manual_seed(1)
    b = tiny_classifier()
    b.init_weights()
    x = torch.randn(2, 3, 32, 32)
    a.eval()
    b.eval()
    assert not torch.allclose(a(x, mode='tensor'), b(x, mode='tensor'))
    b.load_state_dict(a.state_dict(), strict=True)
    assert torch.equal(a(x, mode='tensor'), b(x, mode='tensor'))
    keys = set(a.state_dict())
    assert {'backbone.cls_token', 'backbone.pos_embed', 'backbone.stems.conv.proj.weight',
            'backbone.stems.conv.conv.1.running_mean', 'backbone.ln1.weight',
            'head.heads.cls.weight', 'head.heads.dist.weight'} <= keys


def test_a_second_stem_is_a_config_change():
    """Co-advise's design: patches = sum of the stems' tokens, one mean token per stem."""
    torch.manual_seed(0)
    vit = tiny_backbone(
        stems=[dict(name='conv', type='ConvPatchStem', channels=8),
               dict(name='lin', type='LinearPatchStem', patch_size=16)],
        tokens=['cls', dict(name='conv', type='mean', stem='conv'),
                dict(name='lin', type='mean', stem='lin'),
                dict(name='all', type='mean')])
    vit.init_weights()
    vit.eval()
    assert vit.token_names == ('cls', 'conv', 'lin', 'all')
    assert vit.pos_embed.shape == (1, 4 + 4, 16)
    x = torch.randn(2, 3, 32, 32)
    seq = encoder_input(vit, x)
    conv = vit.stems['conv'](x).flatten(2).transpose(1, 2)  # (N, 4, D)
    lin = vit.stems['lin'](x).flatten(2).transpose(1, 2)
    pos = vit.pos_embed[0].detach()
    torch.testing.assert_close(seq[:, 4:], conv + lin + pos[4:])
    torch.testing.assert_close(seq[:, 1], conv.mean(1) + pos[1])
    torch.testing.assert_close(seq[:, 2], lin.mean(1) + pos[2])
    torch.testing.assert_close(seq[:, 3], (conv + lin).mean(1) + pos[3])
    # A head over the four tokens averages four logits.
    model = tiny_classifier(backbone=dict(
        type='StemTokenViT', arch=TINY_ARCH, img_size=32,
        stems=[dict(name='conv', type='ConvPatchStem', channels=8),
               dict(name='lin', type='LinearPatchStem', patch_size=16)],
        tokens=['cls', dict(name='conv', type='mean', stem='conv'),
                dict(name='lin', type='mean', stem='lin')]), tokens=('cls', 'conv', 'lin'))
    model.eval()
    per_token = model.head.forward_tokens(model.extract_feat(x))
    torch.testing.assert_close(model(x, mode='tensor'), sum(per_token.values()) / 3)


def test_configuration_errors_name_the_choices():
    with pytest.raises(ValueError, match=r"stem 'inv' is not one of \['conv'\]"):
        tiny_backbone(tokens=['cls', dict(name='inv', type='mean', stem='inv')])
    with pytest.raises(ValueError, match='different token grids'):
        tiny_backbone(stems=[dict(name='conv', type='ConvPatchStem', channels=8),
                             dict(name='lin', type='LinearPatchStem', patch_size=8)])
    with pytest.raises(ValueError, match=r"type must be one of \('learned', 'mean'\)"):
        tiny_backbone(tokens=[dict(name='cls', type='zeros')])
    with pytest.raises(ValueError, match='unique identifier "name"'):
        tiny_backbone(tokens=['cls', 'cls'])
    with pytest.raises(ValueError, match="out_type must be one of"):
        tiny_backbone(out_type='cls_token')


def test_vkd_configs_structure():
    """No timm needed: the paper's config wires the distillation head and the paper's recipe;
    its student is exactly the student-only config's; the plain variant says what it is."""
    vkd, student, plain = (Config.fromfile(p) for p in (VKD, STUDENT, PLAIN))
    s = vkd.model.student
    assert s.backbone == student.model.backbone
    assert s.backbone.type == 'StemTokenViT' and s.backbone.drop_path_rate == 0.0
    assert [st.type for st in s.backbone.stems] == ['ConvPatchStem']
    assert [(t.name, t.type) for t in s.backbone.tokens] == [('cls', 'learned'),
                                                              ('dist', 'mean')]
    assert s.head.type == 'MultiTokenClsHead' and s.head.loss_weights == dict(cls=1.0)
    assert student.model.head.loss_weights == dict(cls=0.5, dist=0.5)
    feat, logits = vkd.model.blocks.feat, vkd.model.blocks.logits
    assert feat.student == 'backbone.ln1' and feat.teacher == 'neck'
    assert feat.method.skip_tokens == len(s.backbone.tokens)  # only patch tokens are pooled
    assert (feat.method.type, feat.method.normalize, feat.method.pool, feat.loss_weight) == \
        ('VkD', 'sample', True, 1.0)
    assert logits.student == 'head.heads.dist' and logits.teacher == 'head.fc'
    assert (logits.method.type, logits.method.tau, logits.loss_weight) == ('LogitKD', 1.0, 1.0)
    # Recipe: AdamW 5e-4, no warm-up, one per-iteration cosine to 5e-6, no clipping.
    assert vkd.optim_wrapper.optimizer.type == 'AdamW'
    assert vkd.optim_wrapper.optimizer.lr == 5e-4 and vkd.optim_wrapper.clip_grad is None
    (sched, ) = vkd.param_scheduler
    assert sched.type == 'CosineAnnealingLR' and sched.eta_min == 5e-6
    assert sched.begin == 0 and sched.end == 300 and sched.convert_to_iter_based
    assert vkd.train_cfg.max_epochs == 300
    assert 'RandomChoice' in [t.type for t in vkd.train_dataloader.dataset.pipeline]
    assert "NOT THE PAPER'S STUDENT" in open(PLAIN).read()
    assert plain.model.student.backbone.type == 'VisionTransformer'

    # The full-size student builds, predicts, and its checkpoint keys are the student-only
    # config's (a distilled student exported with extract_student.py loads there).
    torch.manual_seed(0)
    kd_student = build(copy.deepcopy(s))
    alone = build(copy.deepcopy(student.model))
    assert set(kd_student.state_dict()) == set(alone.state_dict())
    kd_student.eval()
    with torch.no_grad():
        assert kd_student(torch.randn(1, 3, 224, 224), mode='tensor').shape == (1, 1000)


def test_vkd_config_builds_and_its_logit_block_reads_the_distillation_head(tmp_path):
    """The paper's config at a tiny size (student width 16, 2 layers; teacher: timm's
    RegNetY-200MF in the config's teacher wrapper instead of RegNetY-16GF)."""
    pytest.importorskip('timm', reason='the VkD ImageNet teacher is a timm RegNetY; the '
                        'config-structure checks that need no timm run in '
                        'test_vkd_configs_structure')
    from mmkd.distillers import build_model_in_scope, load_model_config
    from mmkd.losses import kl_divergence_with_temperature
    cfg = Config.fromfile(VKD)
    model = copy.deepcopy(cfg.model)
    model.student.backbone.arch = TINY_ARCH
    model.student.backbone.stems[0].channels = 8
    model.student.head.in_channels = 16
    model.student.data_preprocessor = cfg.data_preprocessor
    teacher_cfg, scope = load_model_config(model.teacher.config)
    teacher_cfg.backbone.model_name = 'regnety_002'
    teacher_cfg.head.in_channels = 368
    torch.manual_seed(0)
    path = str(tmp_path / 'teacher.pth')
    torch.save(dict(state_dict=build_model_in_scope(teacher_cfg, scope).state_dict()), path)
    model.teacher = dict(model=teacher_cfg, scope=scope, checkpoint=path)
    model.dry_run_input_shape = (2, 3, 64, 64)
    distiller = build(model)
    assert distiller.methods['feat'].connectors[0].weight.shape == (368, 16)

    distiller.train()
    inputs, samples = batch(n=2, size=64, num_classes=1000)
    inputs = inputs * 50 + 120  # raw pixel range; the data preprocessor normalises
    data = distiller.data_preprocessor(dict(inputs=inputs, data_samples=samples), False)
    losses = distiller.loss(data['inputs'], data['data_samples'])
    assert set(losses) == {'student.loss_cls', 'distill.feat.loss_vkd', 'distill.feat.weight',
                           'distill.logits.loss_kd', 'distill.logits.weight'}
    with torch.no_grad():
        t_logits = distiller.teacher(data['inputs'], mode='tensor')
        s_logits = distiller.student.head.forward_tokens(
            distiller.student.extract_feat(data['inputs']))
    torch.testing.assert_close(losses['distill.logits.loss_kd'],
                               kl_divergence_with_temperature(s_logits['dist'], t_logits))
    assert not torch.allclose(losses['distill.logits.loss_kd'],
                              kl_divergence_with_temperature(s_logits['cls'], t_logits))


TRAIN_CFG = """
_base_ = '{repo}/configs/demo/digits/resnet18-tiny_digits.py'
model = dict(
    _delete_=True,
    type='mmkd.Distiller',
    student=dict(
        type='ImageClassifier',
        backbone=dict(type='StemTokenViT', img_size=16,
                      arch=dict(embed_dims=32, num_layers=2, num_heads=2,
                                feedforward_channels=64),
                      stems=[dict(name='conv', type='ConvPatchStem', channels=16,
                                  first_stride=1, num_convs=1, patch_size=4)]),
        neck=None,
        head=dict(type='MultiTokenClsHead', num_classes=10, in_channels=32)),
    teacher=dict(config='{repo}/configs/demo/digits/resnet34-wide_digits.py',
                 checkpoint='{ckpt}'),
    blocks=dict(
        feat=dict(student='backbone.ln1', teacher='neck',
                  method=dict(type='VkD', normalize='sample', pool=True, skip_tokens=2)),
        logits=dict(student='head.heads.dist', teacher='head.fc',
                    method=dict(type='LogitKD', tau=1.0))),
    dry_run_input_shape=(2, 3, 16, 16))
optim_wrapper = dict(_delete_=True, optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05))
param_scheduler = [dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=False, begin=0, end=6)]
train_dataloader = dict(batch_size=32)
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=6, val_interval=6)
default_hooks = dict(logger=dict(type='LoggerHook', interval=3),
                     checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=6,
                                     max_keep_ckpts=1))
log_processor = dict(by_epoch=False)
"""


def test_tools_train_distils_into_the_stem_token_vit(tmp_path):
    """Six iterations of VkD into a tiny stem-token ViT on the digits, through tools/train.py:
    every term is logged, the distillation head gets no CE, it validates and checkpoints."""
    ckpt = random_teacher_checkpoint(DIGITS['teacher'], str(tmp_path / 'teacher.pth'))
    config = tmp_path / 'vkd_stem_token_vit_digits.py'
    config.write_text(TRAIN_CFG.format(repo=REPO, ckpt=ckpt))
    out = run_tool(['tools/train.py', str(config), '--work-dir', str(tmp_path / 'work')]).stdout
    for key in ('student.loss_cls:', 'distill.feat.loss_vkd:', 'distill.logits.loss_kd:',
                'accuracy/top1:'):
        assert key in out, (key, out[-3000:])
    assert 'loss_dist' not in out
    assert osp.isfile(tmp_path / 'work' / 'iter_6.pth')
