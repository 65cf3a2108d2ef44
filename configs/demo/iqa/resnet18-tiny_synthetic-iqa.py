# No-reference IQA student on the scikit-image demo set (mmkd.SyntheticIQADataset: 15 photos
# x 4 crops x 6 distortions x 5 levels, quality = SSIM against the pristine crop, split by
# photo; generated into data/synthetic_iqa on first use, seconds). mmpretrain's CIFAR ResNet-18
# at a quarter width with a quality-regression head (L1 on the [0, 1] quality), scored by
# SRCC / PLCC. A first working setting, not yet tuned (issue 14, part 7 tunes on `tune`).
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

data_root = 'data/synthetic_iqa'
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]
train_dataloader = dict(
    batch_size=32, num_workers=0, persistent_workers=False, drop_last=True,
    dataset=dict(type='mmkd.SyntheticIQADataset', data_root=data_root, split='train',
                 pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True))
val_dataloader = dict(
    batch_size=64, num_workers=0, persistent_workers=False,
    dataset=dict(type='mmkd.SyntheticIQADataset', data_root=data_root, split='test',
                 pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
val_evaluator = dict(type='mmkd.IQAMetric')
test_dataloader = val_dataloader
test_evaluator = val_evaluator

max_epochs = 10
optim_wrapper = dict(optimizer=dict(type='AdamW', lr=2e-3, weight_decay=1e-4))
param_scheduler = dict(type='CosineAnnealingLR', by_epoch=True, T_max=max_epochs)
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=max_epochs)
val_cfg = dict()
test_cfg = dict()
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(type='CheckpointHook', interval=max_epochs, max_keep_ckpts=1,
                    save_best='iqa/srcc', rule='greater'))
randomness = dict(seed=0, deterministic=False)
