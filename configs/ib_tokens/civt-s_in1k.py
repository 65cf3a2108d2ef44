# The inductive-bias-token ViT of Co-advise (CivT-S: Ren et al., CVPR 2022; authors' code
# OliverRensu/co-advise, models.py `deit_small_distilled_patch16_224`) alone, with the authors'
# ImageNet recipe: train it as the no-teacher baseline, or test a distilled student exported
# with tools/model_converters/extract_student.py (same architecture and module names).
#   stems:  conv (7x7/2 3->64 + BN + ReLU, 2 x [3x3 64->64 + BN + ReLU], 8x8/8 -> 384) and inv
#           (RedNet-26's stem: 3x3/2 3->32 + BN + ReLU, 3x3 involution, BN, ReLU, 3x3 32->64 +
#           BN + ReLU, 8x8/8 -> 384; float32 under AMP); patches = conv + inv (14 x 14);
#   tokens: [cls (learned), conv (mean of the conv stem's tokens), inv (mean of the involution
#           stem's tokens), 196 patches]; position embedding over all 199;
#   heads:  one linear head per token; the test averages the three (authors' `forward`).
# Our choice (the authors' code has no teacher-free path): without teachers every head takes a
# third of the label-smoothed cross-entropy. The recipe, line by line: README.md in this folder.
_base_ = 'mmpretrain::deit/deit-small_4xb256_in1k.py'
custom_imports = dict(imports=['mmkd'], allow_failed_imports=False)

embed_dims = 384
model = dict(
    _delete_=True,
    type='ImageClassifier',
    backbone=dict(
        type='StemTokenViT',
        arch='deit-small',
        img_size=224,
        stems=[dict(name='conv', type='ConvPatchStem', channels=64, first_kernel=7,
                    first_stride=2, num_convs=2, patch_size=8),
               dict(name='inv', type='InvolutionPatchStem', channels=64, first_stride=2,
                    patch_size=8, force_fp32=True)],
        tokens=[dict(name='cls', type='learned'),
                dict(name='conv', type='mean', stem='conv'),
                dict(name='inv', type='mean', stem='inv')],
        out_type='extra_tokens',
        # The authors build the model without arguments: timm's default drop path 0 (their
        # config's DROP_PATH_RATE 0.1 is never passed to it).
        drop_path_rate=0.0),
    neck=None,
    head=dict(
        type='MultiTokenClsHead',
        num_classes=1000,
        in_channels=embed_dims,
        tokens=('cls', 'conv', 'inv'),
        loss_weights=dict(cls=1 / 3, conv=1 / 3, inv=1 / 3),
        predict_weights=None,  # (cls + conv + inv) / 3, as the authors test
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original')),
    init_cfg=[
        dict(type='TruncNormal', layer='Linear', std=.02),
        dict(type='Constant', layer='LayerNorm', val=1., bias=0.),
    ],
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]))

# Swin's trainer, which the authors use: gradient-norm clipping at 5.0 * 3 (config.py
# TRAIN.CLIP_GRAD); mmpretrain's DeiT config clips at 5.
optim_wrapper = dict(clip_grad=dict(max_norm=15.0))
