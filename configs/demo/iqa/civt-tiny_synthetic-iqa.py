# The no-reference student of RKIQT on the IQA demo set, trained alone: a ViT with inductive-bias
# tokens (Co-advise's CivT at demo size, as configs/demo/digits/civt-tiny_digits.py): patch
# tokens = sum of a conv stem's and an involution stem's 4x4 patches of the 32x32 crop (an 8x8
# grid), sequence [cls, conv, inv, 64 patches], 4 layers of width 32. One quality head per token
# (QualityRegressionHead, L1); alone, each head takes a third of the regression loss, and the
# test averages the three. Recipe chosen on the tune split (docs/benchmarks.md, "RKIQT").
_base_ = './resnet18-tiny_synthetic-iqa.py'

vit_arch = dict(embed_dims=32, num_layers=4, num_heads=2, feedforward_channels=64)
model = dict(
    _delete_=True,
    type='ImageClassifier',
    backbone=dict(
        type='StemTokenViT', arch=vit_arch, img_size=32,
        stems=[dict(name='conv', type='ConvPatchStem', channels=16, first_kernel=3,
                    first_stride=1, num_convs=1, patch_size=4),
               dict(name='inv', type='InvolutionPatchStem', channels=32, first_stride=1,
                    patch_size=4)],
        tokens=[dict(name='cls', type='learned'),
                dict(name='conv', type='mean', stem='conv'),
                dict(name='inv', type='mean', stem='inv')]),
    neck=None,
    head=dict(type='QualityRegressionHead', in_channels=32, loss='l1',
              tokens=('cls', 'conv', 'inv'),
              loss_weights=dict(cls=1 / 3, conv=1 / 3, inv=1 / 3)))

optim_wrapper = dict(
    _delete_=True,
    optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0,
                       custom_keys={'.cls_token': dict(decay_mult=0.0),
                                    '.pos_embed': dict(decay_mult=0.0)}))
# 5 epochs (675 iterations), a sixth of the teachers' (resnet18-tiny_synthetic-iqa.py).
max_epochs = 5
param_scheduler = dict(_delete_=True, type='CosineAnnealingLR', by_epoch=True,
                       T_max=max_epochs, eta_min=1e-5, convert_to_iter_based=True)
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
default_hooks = dict(checkpoint=dict(interval=max_epochs))
