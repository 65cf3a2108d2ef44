"""Inductive-bias tokens (Co-advise / CivT): the involution stem, the token layout against the
authors' forward, loading plain ViT / DeiT / CivT checkpoints, the three-head predict rule,
the RedNet teacher's checkpoint layouts, the ImageNet configs' wiring, and the digits demo
through the command-line tools."""
import ast
import copy
import os.path as osp
import re

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmpretrain.models.utils import resize_pos_embed

from mmkd.models import (InvolutionPatchStem, MultiTokenClsHead, RedNet, StemTokenViT,
                         convert_rednet_checkpoint, convert_vit_checkpoint)

from conftest import DEMO, REPO, build, run_tool, teacher_checkpoint_options

TINY = dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64)
IB = osp.join(REPO, 'configs', 'ib_tokens')
CIVT_S = osp.join(IB, 'civt-s_regnety-040_rednet-101_in1k.py')
CIVT_TI = osp.join(IB, 'civt-ti_regnety-040_rednet-101_in1k.py')
STUDENT_S = osp.join(IB, 'civt-s_in1k.py')
DIGITS_IBT = osp.join(DEMO, 'digits', 'ibt_resnet34-wide+rednet-tiny_civt-tiny_digits.py')
DIGITS_IBT_CLS = osp.join(DEMO, 'digits', 'ibt-cls_resnet34-wide+rednet-tiny_civt-tiny_digits.py')
DIGITS_CIVT = osp.join(DEMO, 'digits', 'civt-tiny_digits.py')


def civt(img_size=32, **kwargs) -> StemTokenViT:
    """A tiny CivT backbone: conv + involution stems (stride 2, 8x8 projection: a 2x2 grid at
    32x32), tokens [cls, conv, inv]."""
    cfg = dict(arch=TINY, img_size=img_size,
               stems=[dict(name='conv', type='ConvPatchStem', channels=16),
                      dict(name='inv', type='InvolutionPatchStem', channels=32)],
               tokens=['cls', dict(name='conv', type='mean', stem='conv'),
                       dict(name='inv', type='mean', stem='inv')])
    cfg.update(kwargs)
    vit = StemTokenViT(**cfg)
    vit.init_weights()
    vit.eval()  # mmpretrain's backbones return None from train() / eval()
    return vit


def encoder_input(backbone, x):
    seen = {}
    handle = backbone.layers[0].register_forward_pre_hook(
        lambda m, args: seen.update(x=args[0].detach().clone()))
    backbone(x)
    handle.remove()
    return seen['x']


# ---------------------------------------------------------------- the involution stem
def test_involution_stem_is_rednet26s_stem_plus_projection():
    """Co-advise's embed_inv: RedNet(26).stem, then an 8x8 stride-8 conv to the width; 224x224
    gives the conv stem's 14x14 grid. Kaiming-normal init on every conv (the generator's too)."""
    torch.manual_seed(0)
    stem = InvolutionPatchStem(embed_dims=384)
    stem.init_weights()
    rednet = RedNet(depth=26)
    # The same modules under the same names (stem.0.conv, stem.1.conv1.conv, ...).
    rednet.stem.load_state_dict(stem.stem.state_dict(), strict=True)
    assert set(stem.state_dict()) == {f'stem.{k}' for k in rednet.stem.state_dict()} | {
        'proj.weight', 'proj.bias'}
    assert stem.proj.kernel_size == (8, 8) and stem.proj.stride == (8, 8)
    stem.eval()
    rednet.eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        out = stem(x)
        torch.testing.assert_close(out, stem.proj(rednet.stem(x)))
    assert out.shape == (1, 384, 14, 14)
    for conv, fan_in in ((stem.stem[0].conv, 3 * 9), (stem.stem[1].conv1.conv, 32),
                         (stem.stem[4].conv, 32 * 9), (stem.proj, 64 * 64)):
        assert abs(conv.weight.std().item() / (2 / fan_in) ** 0.5 - 1) < 0.15


def test_involution_stem_runs_in_float32_under_autocast():
    torch.manual_seed(0)
    stem = InvolutionPatchStem(embed_dims=32, channels=32).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        assert stem(x).dtype == torch.float32
        stem.force_fp32 = False
        assert stem(x).dtype == torch.bfloat16


# ---------------------------------------------------------------- token layout
def test_civt_sequence_is_cls_conv_inv_then_the_summed_patches():
    torch.manual_seed(0)
    vit = civt()
    assert vit.token_names == ('cls', 'conv', 'inv')
    assert vit.patch_resolution == (2, 2) and vit.pos_embed.shape == (1, 3 + 4, 32)
    x = torch.randn(2, 3, 32, 32)
    seq = encoder_input(vit, x)
    conv = vit.stems['conv'](x).flatten(2).transpose(1, 2)  # (N, 4, D)
    inv = vit.stems['inv'](x).flatten(2).transpose(1, 2)
    pos = vit.pos_embed[0].detach()
    torch.testing.assert_close(seq[:, 0], vit.cls_token[0, 0].detach().expand(2, -1) + pos[0])
    torch.testing.assert_close(seq[:, 1], conv.mean(1) + pos[1])
    torch.testing.assert_close(seq[:, 2], inv.mean(1) + pos[2])
    torch.testing.assert_close(seq[:, 3:], conv + inv + pos[3:])
    # Only the class token is a parameter: conv and inv are computed from the image.
    assert [k for k in vit.state_dict() if k.endswith('_token')] == ['cls_token']


def authors_civt(vit: StemTokenViT, heads: MultiTokenClsHead, timm_vit) -> nn.Module:
    """The authors' DistilledVisionTransformer (OliverRensu/co-advise models.py) rebuilt from
    its text on timm's VisionTransformer: patch_embed deleted, conv_embed / inv_embed, a
    (1, 3 + N, D) pos_embed, head / head_conv / head_inv, and their forward (the test: the mean
    of the three heads). Its weights are copied from ours by module, not by key name."""

    class Authors(nn.Module):
        def __init__(self):
            super().__init__()
            self.cls_token = nn.Parameter(vit.cls_token.detach().clone())
            self.pos_embed = nn.Parameter(vit.pos_embed.detach().clone())
            self.conv_embed = copy.deepcopy(vit.stems['conv'])
            self.inv_embed = copy.deepcopy(vit.stems['inv'])
            self.blocks, self.norm = timm_vit.blocks, timm_vit.norm
            self.head = copy.deepcopy(heads.heads['cls'])
            self.head_conv = copy.deepcopy(heads.heads['conv'])
            self.head_inv = copy.deepcopy(heads.heads['inv'])

        def forward(self, x):
            x_conv = self.conv_embed(x).flatten(2).transpose(1, 2)
            x_inv = self.inv_embed(x).flatten(2).transpose(1, 2)
            x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1),
                           x_conv.mean(1, keepdim=True), x_inv.mean(1, keepdim=True),
                           x_conv + x_inv), dim=1) + self.pos_embed
            for blk in self.blocks:
                x = blk(x)
            x = self.norm(x)
            return (self.head(x[:, 0]) + self.head_conv(x[:, 1]) + self.head_inv(x[:, 2])) / 3

    return Authors()


def test_civt_checkpoint_in_the_authors_layout_gives_their_model_exactly():
    """A state dict in Co-advise's layout (timm blocks, conv_embed / inv_embed, head_conv /
    head_inv) converts and loads strictly into our classifier, whose logits equal the authors'
    forward on the same weights."""
    timm = pytest.importorskip('timm', reason='the authors build CivT on timm ViT blocks')
    torch.manual_seed(0)
    ours = build(dict(type='ImageClassifier',
                      backbone=dict(type='StemTokenViT', arch=TINY, img_size=32,
                                    stems=[dict(name='conv', type='ConvPatchStem', channels=16),
                                           dict(name='inv', type='InvolutionPatchStem',
                                                channels=32)],
                                    tokens=['cls', dict(name='conv', type='mean', stem='conv'),
                                            dict(name='inv', type='mean', stem='inv')]),
                      neck=None,
                      head=dict(type='MultiTokenClsHead', num_classes=7, in_channels=32,
                                tokens=('cls', 'conv', 'inv'))))
    ours.init_weights()
    timm_vit = timm.models.vision_transformer.VisionTransformer(
        img_size=32, patch_size=16, embed_dim=32, depth=2, num_heads=2, mlp_ratio=2,
        qkv_bias=True, num_classes=7)
    authors = authors_civt(ours.backbone, ours.head, timm_vit)
    authors_sd = {k: v for k, v in authors.state_dict().items()}
    assert {'conv_embed.proj.weight', 'inv_embed.stem.1.conv2.conv.weight', 'head_conv.weight',
            'blocks.0.mlp.fc1.weight', 'norm.weight', 'pos_embed'} <= set(authors_sd)
    fresh = copy.deepcopy(ours)
    torch.manual_seed(1)
    fresh.init_weights()
    fresh.load_state_dict(convert_vit_checkpoint({'model': authors_sd}), strict=True)
    authors.eval()
    fresh.eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x, mode='tensor'), authors(x), rtol=1e-5, atol=1e-5)
    with pytest.raises(KeyError, match="unexpected key 'fc_norm.weight'"):
        convert_vit_checkpoint({'fc_norm.weight': torch.zeros(1)})


# ---------------------------------------------------------------- plain ViT / DeiT checkpoints
def mmpretrain_vit(distilled=False, seed=0):
    from mmpretrain.models.backbones import DistilledVisionTransformer, VisionTransformer
    torch.manual_seed(seed)
    cls = DistilledVisionTransformer if distilled else VisionTransformer
    vit = cls(arch=TINY, img_size=32, patch_size=8, out_type='raw')  # a 4x4 grid
    vit.init_weights()
    with torch.no_grad():  # distinct from any init, so a token taken from it is recognisable
        vit.pos_embed.normal_()
    vit.eval()
    return vit


@pytest.mark.parametrize('distilled', [False, True], ids=['vit', 'deit-distilled'])
def test_plain_vit_and_deit_checkpoints_load_into_the_same_layout_exactly(distilled):
    """mmpretrain's ViT (tokens [cls]) and distilled DeiT ([cls, dist]) into a StemTokenViT with
    a linear patch stem and the same tokens: the same function (patch_embed -> the stem)."""
    vit = mmpretrain_vit(distilled)
    tokens = ['cls', 'dist'] if distilled else ['cls']
    ours = StemTokenViT(arch=TINY, img_size=32, out_type='raw', tokens=tokens,
                        stems=[dict(name='patch', type='LinearPatchStem', patch_size=8)])
    ours.load_state_dict(vit.state_dict(), strict=True)
    ours.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x)[0], vit(x)[0])


@pytest.mark.parametrize('distilled', [False, True], ids=['vit', 'deit-distilled'])
def test_plain_checkpoint_into_civt_keeps_cls_by_name_and_resizes_the_grid(distilled):
    """1 (ViT) or 2 (DeiT) extra tokens + a 4x4 grid into [cls, conv, inv] + a 2x2 grid: cls
    takes the checkpoint's cls position, conv and inv keep their init, the grid is resized
    from the checkpoint's own 4x4; the layers load unchanged. mmpretrain's rule (the model's
    3 extra tokens) cannot even split the checkpoint's 17 or 18 positions."""
    vit = mmpretrain_vit(distilled)
    ckpt = vit.state_dict()
    torch.manual_seed(5)
    ours = civt()
    before = ours.pos_embed.detach().clone()
    missing, unexpected = ours.load_state_dict(ckpt, strict=False)
    assert all(k.startswith('stems.') for k in missing)  # the stems are new
    assert set(unexpected) == ({'patch_embed.projection.weight', 'patch_embed.projection.bias'}
                               | ({'dist_token'} if distilled else set()))
    pos, src = ours.pos_embed.detach(), ckpt['pos_embed']
    n_extra = 2 if distilled else 1
    torch.testing.assert_close(pos[:, 0], src[:, 0])  # cls, by name
    torch.testing.assert_close(pos[:, 1:3], before[:, 1:3])  # conv, inv: our init
    torch.testing.assert_close(pos[:, 3:], resize_pos_embed(
        src[:, n_extra:], (4, 4), (2, 2), 'bicubic', num_extra_tokens=0))
    torch.testing.assert_close(ours.layers.state_dict(), vit.layers.state_dict())
    torch.testing.assert_close(ours.cls_token, vit.cls_token)
    with pytest.raises(AssertionError, match="length of `pos_embed`"):
        resize_pos_embed(src, (int((src.shape[1] - 3) ** 0.5), ) * 2, (2, 2), 'bicubic',
                         num_extra_tokens=3)


def test_pretrained_init_cfg_and_own_checkpoints(tmp_path):
    """The user's route, init_cfg Pretrained: the tokens the checkpoint lacks get a real
    initialisation (not zeros). A CivT checkpoint into a CivT at another image size keeps all
    three token positions (its tokens are the model's, not its one learned token)."""
    vit = mmpretrain_vit()
    path = str(tmp_path / 'vit.pth')
    torch.save(dict(state_dict={f'backbone.{k}': v for k, v in vit.state_dict().items()}), path)
    torch.manual_seed(0)
    ours = civt(init_cfg=dict(type='Pretrained', checkpoint=path, prefix='backbone.'))
    pos = ours.pos_embed.detach()
    torch.testing.assert_close(pos[:, 0], vit.pos_embed.detach()[:, 0])
    assert 0.01 < pos[0, 1:3].std().item() < 0.03  # trunc-normal std 0.02, not zeros
    torch.testing.assert_close(ours.layers.state_dict(), vit.layers.state_dict())

    big = civt(img_size=64)  # a 4x4 grid
    big.load_state_dict(ours.state_dict(), strict=True)
    torch.testing.assert_close(big.pos_embed.detach()[:, :3], pos[:, :3])
    torch.testing.assert_close(big.pos_embed.detach()[:, 3:], resize_pos_embed(
        pos[:, 3:], (2, 2), (4, 4), 'bicubic', num_extra_tokens=0))
    with pytest.raises(ValueError, match='not a square grid.*checkpoint_tokens'):
        civt(checkpoint_tokens=('cls', 'dist')).load_state_dict(vit.state_dict(), strict=False)


def test_timm_deit_checkpoint_converts_to_the_same_classifier():
    """DeiT as its authors release it (timm's layout under 'model') -> our classifier with a
    linear patch stem and a class-token head: the same logits."""
    timm = pytest.importorskip('timm', reason='the reference here is timm\'s ViT')
    torch.manual_seed(0)
    deit = timm.models.vision_transformer.VisionTransformer(
        img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, mlp_ratio=2,
        qkv_bias=True, num_classes=7).eval()
    ours = build(dict(type='ImageClassifier',
                      backbone=dict(type='StemTokenViT', arch=TINY, img_size=32, tokens=['cls'],
                                    stems=[dict(name='patch', type='LinearPatchStem',
                                                patch_size=8)]),
                      neck=None,
                      head=dict(type='MultiTokenClsHead', num_classes=7, in_channels=32,
                                tokens=('cls', ))))
    ours.load_state_dict(convert_vit_checkpoint({'model': deit.state_dict()}), strict=True)
    ours.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x, mode='tensor'), deit(x), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- heads
def test_three_heads_predict_the_mean_or_the_class_head_alone():
    torch.manual_seed(0)
    mean = MultiTokenClsHead(num_classes=5, in_channels=8, tokens=('cls', 'conv', 'inv'))
    only_cls = MultiTokenClsHead(num_classes=5, in_channels=8, tokens=('cls', 'conv', 'inv'),
                                 predict_weights=dict(cls=1.0))
    only_cls.load_state_dict(mean.state_dict())
    feats = (torch.randn(4, 3, 8), )
    logits = mean.forward_tokens(feats)
    torch.testing.assert_close(mean(feats), (logits['cls'] + logits['conv'] + logits['inv']) / 3)
    assert torch.equal(only_cls(feats), logits['cls'])
    # The demo's (c) and (d) differ only there: same model, same losses.
    c, d = Config.fromfile(DIGITS_IBT).model, Config.fromfile(DIGITS_IBT_CLS).model
    assert c.student.head.predict_weights is None
    assert d.student.head.predict_weights == dict(cls=1.0)
    d.student.head.predict_weights = None
    assert c.to_dict() == d.to_dict()


# ---------------------------------------------------------------- the involution teacher
def test_coadvise_involution_teacher_layout_converts(tmp_path):
    """Co-advise's inv_teacher.pth: rednet.Red101 = an mmcls RedNet as `model.*` and a linear
    `classifier.*`, under 'model'. convert_rednet_checkpoint and the config's revise_keys both
    load it strictly into mmpretrain's classifier with this RedNet."""
    from mmkd.distillers import load_checkpoint_strict
    torch.manual_seed(0)
    cfg = dict(type='ImageClassifier',
               backbone=dict(type='RedNet', depth=26, stem_channels=32, base_channels=16),
               neck=dict(type='GlobalAveragePooling'),
               head=dict(type='LinearClsHead', num_classes=5, in_channels=512))
    source = build(cfg)
    authors = {'model': {
        **{f'model.{k}': v for k, v in source.backbone.state_dict().items()},
        **{f'classifier.{k}': v for k, v in source.head.fc.state_dict().items()}}}
    target = build(cfg)
    target.load_state_dict(convert_rednet_checkpoint(authors), strict=True)
    for k, v in source.state_dict().items():
        assert torch.equal(target.state_dict()[k], v), k
    path = str(tmp_path / 'inv_teacher.pth')
    torch.save(authors, path)
    text = open(CIVT_S).read()
    revise = ast.literal_eval(re.search(r"# revise_keys=(\[.*\]),", text).group(1))
    load_checkpoint_strict(build(cfg), path, revise_keys=revise)


# ---------------------------------------------------------------- the ImageNet configs
def test_imagenet_configs_are_the_authors_recipe():
    cfg, ti, student = (Config.fromfile(p) for p in (CIVT_S, CIVT_TI, STUDENT_S))
    s = cfg.model.student
    assert s.backbone == student.model.backbone and s.backbone.arch == 'deit-small'
    assert [(t.name, t.type, t.get('stem')) for t in s.backbone.tokens] == [
        ('cls', 'learned', None), ('conv', 'mean', 'conv'), ('inv', 'mean', 'inv')]
    assert [st.type for st in s.backbone.stems] == ['ConvPatchStem', 'InvolutionPatchStem']
    assert s.backbone.stems[1].force_fp32 and s.backbone.drop_path_rate == 0.0
    assert s.head.loss_weights == dict(cls=1.0) and s.head.predict_weights is None
    assert s.head.tokens == ('cls', 'conv', 'inv') and s.head.in_channels == 384
    assert ti.model.student.backbone.arch == 'deit-tiny'
    assert ti.model.student.head.in_channels == 192
    assert set(cfg.model.teachers) == {'cnn', 'inv'}
    assert cfg.model.teachers.cnn.config.endswith('regnety-040_timm_in1k_teacher.py')
    assert cfg.model.teachers.inv.config.endswith('rednet101_in1k.py')
    blocks = cfg.model.blocks
    assert {(n, b.student, b.teacher, b.method.type, b.method.tau, b.loss_weight)
            for n, b in blocks.items()} == {
        ('conv', 'head.heads.conv', 'cnn:head.fc', 'LogitKD', 1.0, 1.0),
        ('inv', 'head.heads.inv', 'inv:head.fc', 'LogitKD', 1.0, 1.0)}
    # Swin's trainer as the authors run it: AdamW 5e-4 per 512 (1e-3 at 1,024), weight decay
    # 0.05 but not on norms, biases, 1-D parameters, cls token and position embedding; clip 15;
    # 20 warm-up epochs from 1e-6; cosine to 1e-5; 300 epochs; Mixup 0.8 / CutMix 1.0;
    # label smoothing 0.1; RandAugment m9 and random erasing 0.25.
    opt = cfg.optim_wrapper
    assert opt.optimizer.type == 'AdamW' and opt.optimizer.lr == 1e-3
    assert cfg.auto_scale_lr.base_batch_size == 1024
    assert cfg.train_dataloader.batch_size * 4 == 1024
    assert opt.optimizer.weight_decay == 0.05 and opt.clip_grad.max_norm == 15.0
    pw = opt.paramwise_cfg
    assert pw.norm_decay_mult == pw.bias_decay_mult == pw.flat_decay_mult == 0.0
    assert {'.cls_token', '.pos_embed'} <= set(pw.custom_keys)
    warm, cosine = cfg.param_scheduler
    assert (warm.type, warm.start_factor, warm.end) == ('LinearLR', 1e-3, 20)
    assert (cosine.type, cosine.eta_min, cosine.begin) == ('CosineAnnealingLR', 1e-5, 20)
    assert cfg.train_cfg.max_epochs == 300
    assert [a.type for a in s.train_cfg.augments] == ['Mixup', 'CutMix']
    assert s.head.loss.label_smooth_val == 0.1
    pipeline = [t.type for t in cfg.train_dataloader.dataset.pipeline]
    assert 'RandAugment' in pipeline and 'RandomErasing' in pipeline
    # The distilled student exports into the student-only config (same keys).
    torch.manual_seed(0)
    tiny = copy.deepcopy(s)
    tiny.backbone.arch, tiny.backbone.img_size, tiny.head.in_channels = TINY, 32, 32
    alone = copy.deepcopy(student.model)
    alone.backbone.arch, alone.backbone.img_size, alone.head.in_channels = TINY, 32, 32
    assert set(build(tiny).state_dict()) == set(build(alone).state_dict())


def test_full_size_civt_s_shapes():
    """CivT-S at 224: 199 positions (3 tokens + 14 x 14), three heads of 1,000 classes."""
    torch.manual_seed(0)
    model = build(copy.deepcopy(Config.fromfile(STUDENT_S).model))
    assert model.backbone.pos_embed.shape == (1, 199, 384)
    assert model.backbone.patch_resolution == (14, 14)
    model.eval()
    with torch.no_grad():
        feats = model.extract_feat(torch.randn(1, 3, 224, 224))
        assert feats[-1].shape == (1, 3, 384)
        assert {k: v.shape for k, v in model.head.forward_tokens(feats).items()} == {
            t: (1, 1000) for t in ('cls', 'conv', 'inv')}


# ---------------------------------------------------------------- the digits demo, end to end
def test_digits_ib_tokens_train_test_and_export(tmp_path, teacher_ckpts):
    """Three iterations of (c) through tools/train.py (both teachers, both blocks logged, no CE
    on the token heads); tools/test.py on the checkpoint, and on the exported student in the
    student-only config, score the same."""
    work = tmp_path / 'work'
    opts = [*teacher_checkpoint_options(DIGITS_IBT, teacher_ckpts),
            'train_cfg.max_epochs=1', 'train_dataloader.dataset.indices=96',
            'train_dataloader.batch_size=32', 'val_dataloader.dataset.indices=64',
            'default_hooks.logger.interval=1', 'default_hooks.checkpoint.interval=1']
    out = run_tool(['tools/train.py', DIGITS_IBT, '--work-dir', str(work), '--cfg-options',
                    *opts]).stdout
    for key in ('student.loss_cls:', 'distill.conv.loss_kd:', 'distill.inv.loss_kd:'):
        assert key in out, (key, out[-3000:])
    assert 'loss_conv' not in out and 'loss_inv' not in out
    ckpt = str(work / 'epoch_1.pth')
    test_opts = ['--cfg-options', *teacher_checkpoint_options(DIGITS_IBT, teacher_ckpts),
                 'test_dataloader.dataset.indices=64']

    def accuracy(text):
        return float(re.findall(r'accuracy/top1: ([0-9.]+)', text)[-1])

    distilled = accuracy(run_tool(['tools/test.py', DIGITS_IBT, ckpt, '--work-dir',
                                   str(tmp_path / 't1'), *test_opts]).stdout)
    exported = str(tmp_path / 'student.pth')
    run_tool(['tools/model_converters/extract_student.py', ckpt, exported])
    alone = accuracy(run_tool(['tools/test.py', DIGITS_CIVT, exported, '--work-dir',
                               str(tmp_path / 't2'), '--cfg-options',
                               'test_dataloader.dataset.indices=64']).stdout)
    assert alone == distilled
