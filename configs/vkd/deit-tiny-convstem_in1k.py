# The VkD authors' DeiT-Tiny student alone (no teacher, no KD), with their ImageNet recipe:
# train it as a baseline, or test a distilled student exported with
# tools/model_converters/extract_student.py (same architecture and module names).
# Student (roymiles/vkd models/deit.py, from Co-advise's CiVT): a conv stem (7x7/2 3->64 + BN +
# ReLU, 2 x [3x3 64->64 + BN + ReLU], 8x8/8 projection to 192) instead of 16x16 patches;
# tokens [cls (learned), dist (mean of the patch embeddings), 14x14 patches]; a linear head
# per token, logits averaged at test time.
# Recipe (roymiles/vkd train.py, engine.py, augment.py): 300 epochs; AdamW lr 5e-4 (their
# optimizer ignores the batch-size scaling they compute), weight decay 0.05 (not on 1-D
# params, biases, cls_token, pos_embed); no warm-up; cosine per iteration to 5e-6; no
# gradient clipping; drop path 0 (their --drop-path 0.1 is never passed to the model); train
# augmentation: random resized crop + flip + one of {grayscale, solarize, Gaussian blur} +
# colour jitter 0.3 (their aug_generator replaces RandAugment / random erasing), Mixup 0.8 /
# CutMix 1.0, label smoothing 0.1. Batch 1024 (their 2 GPUs x 512; 79.2 came from 1 x 512).
# Our choice (the authors' code has no working KD-free path): without a teacher both heads
# take the label-smoothed CE, weighted 0.5 each.
_base_ = 'mmpretrain::deit/deit-tiny_4xb256_in1k.py'
custom_imports = dict(imports=['mmkd'], allow_failed_imports=False)

model = dict(
    _delete_=True,
    type='ImageClassifier',
    backbone=dict(
        type='StemTokenViT',
        arch='deit-tiny',
        img_size=224,
        stems=[dict(name='conv', type='ConvPatchStem', channels=64, first_kernel=7,
                    first_stride=2, num_convs=2, patch_size=8)],
        tokens=[dict(name='cls', type='learned'),
                dict(name='dist', type='mean', stem='conv')],
        out_type='extra_tokens',
        drop_path_rate=0.0),
    neck=None,
    head=dict(
        type='MultiTokenClsHead',
        num_classes=1000,
        in_channels=192,
        tokens=('cls', 'dist'),
        loss_weights=dict(cls=0.5, dist=0.5),
        predict_weights=None,  # the average of both heads, as the authors test
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original')),
    init_cfg=[
        dict(type='TruncNormal', layer='Linear', std=.02),
        dict(type='Constant', layer='LayerNorm', val=1., bias=0.),
    ],
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]))

# The authors' augment.py: RandomResizedCrop(0.08-1, bicubic) + flip, then one of grayscale /
# solarize (threshold 128) / Gaussian blur (radius U(0.1, 2)), then ColorJitter(0.3, 0.3, 0.3).
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=224, backend='pillow', interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='RandomChoice', transforms=[
        # PIL's luma weights in the BGR channel order of the loaded image.
        [dict(type='RandomGrayscale', prob=1.0, keep_channels=True,
              channel_weights=(0.114, 0.587, 0.299))],
        [dict(type='Solarize', thr=128, prob=1.0)],
        [dict(type='GaussianBlur', magnitude_range=(0.1, 2.0), magnitude_std='inf',
              prob=1.0)],
    ]),
    dict(type='ColorJitter', brightness=0.3, contrast=0.3, saturation=0.3),
    dict(type='PackInputs'),
]
train_dataloader = dict(batch_size=256, dataset=dict(pipeline=train_pipeline))

optim_wrapper = dict(optimizer=dict(lr=5e-4), clip_grad=None)
param_scheduler = [
    dict(type='CosineAnnealingLR', eta_min=5e-6, by_epoch=True, begin=0, end=300,
         convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=300, val_interval=1)
auto_scale_lr = dict(base_batch_size=1024)
