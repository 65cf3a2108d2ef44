# No-reference CNN on the scikit-image IQA demo set (mmkd.SyntheticIQADataset, 15 photos x 16
# crops (a 4x4 grid) x 6 distortions x 5 levels = 7,200 images, split by photo: 12 train / 3 test
# photos, 3 of the 12 held out as 'tune' by quality.py --tune; generated into
# data/synthetic_iqa32g4 on first use, about 20 s), at 32x32 crops so a CPU trains it in
# minutes. Label: the distortion level as quality ((5 - level) / 4; synthetic, not human
# opinion). mmpretrain's CIFAR ResNet-18 at a quarter width with a quality-regression head (L1
# on the [0, 1] quality), scored by SRCC / PLCC.
# The CNN teacher of the inductive-bias tokens (the conv token's) and the shared data/recipe of
# every config in this folder. Set, crops, label and recipe chosen on the tune split
# (docs/benchmarks.md, "RKIQT").
_base_ = [
    'mmpretrain::_base_/models/resnet18_cifar.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['mmkd'], allow_failed_imports=False)

model = dict(
    backbone=dict(stem_channels=16, base_channels=16),
    head=dict(_delete_=True, type='QualityRegressionHead', in_channels=128, loss='l1'))

data_preprocessor = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
                         to_rgb=True)

data_root = 'data/synthetic_iqa32g4'
# label='ssim' (SSIM against the pristine crop) is the other choice; on the tune split no model
# here learned it across photos (SRCC 0.2-0.35), while the level is learned (0.6-0.7).
iqa_data = dict(type='mmkd.SyntheticIQADataset', data_root=data_root, crop_size=32,
                crops_per_side=4, label='level')
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]
train_dataloader = dict(
    batch_size=32, num_workers=0, persistent_workers=False, drop_last=True,
    dataset=dict(**iqa_data, split='train', pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True))
val_dataloader = dict(
    batch_size=64, num_workers=0, persistent_workers=False,
    dataset=dict(**iqa_data, split='test', pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
val_evaluator = dict(type='mmkd.IQAMetric')
test_dataloader = val_dataloader
test_evaluator = val_evaluator

# The teachers (this config, rednet-tiny, nar-resnet18-tiny) train 6x as long as the students
# (civt-tiny and its distillers: 5 epochs). Chosen on the tune split (docs/benchmarks.md,
# "RKIQT"): 30 epochs beat 15 by 2-3 SRCC points there.
max_epochs = 30
optim_wrapper = dict(optimizer=dict(type='AdamW', lr=2e-3, weight_decay=1e-4))
param_scheduler = dict(type='CosineAnnealingLR', by_epoch=True, T_max=max_epochs)
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=max_epochs)
val_cfg = dict()
test_cfg = dict()
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(type='CheckpointHook', interval=max_epochs, max_keep_ckpts=1))
randomness = dict(seed=0, deterministic=False)
