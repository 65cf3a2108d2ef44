# No-reference ResNet-50 on LIVE Challenge (LIVEC; mmkd.LIVEChallengeDataset: 1,162 photographs,
# MOS 0-100 -> quality in [0, 1]; split 80/20 at random by image, split_seed 0 .. 9 for the
# papers' 10 repeats). RKIQT's CNN teacher (the conv token's) and the shared data / recipe of
# every config in this folder. ImageNet-initialised (mmpretrain's ResNet-50, 76.55 top-1).
# Recipe (ours; RKIQT's is not stated in what we could read): DEIQT's (Qin et al., AAAI 2023,
# the same group's ViT-S IQA model): AdamW lr 2e-4, weight decay 1e-2, batch 16, 9 epochs,
# cosine; 224x224 random crops + horizontal flip in training; the test takes the centre crop
# (DEIQT averages 25 random crops: not implemented here, say so when comparing).
_base_ = [
    'mmpretrain::_base_/models/resnet50.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['mmkd'], allow_failed_imports=False)

model = dict(
    backbone=dict(init_cfg=dict(
        type='Pretrained', prefix='backbone',
        checkpoint='https://download.openmmlab.com/mmclassification/v0/resnet/'
                   'resnet50_8xb32_in1k_20210831-ea4938fc.pth')),
    head=dict(_delete_=True, type='QualityRegressionHead', in_channels=2048, loss='l1'))

data_preprocessor = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
                         to_rgb=True)

# LIVEC as distributed: data/LIVEC/{Images, Data/AllImages_release.mat, Data/AllMOS_release.mat}
iqa_data = dict(type='mmkd.LIVEChallengeDataset', data_root='data/LIVEC', split_seed=0)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomCrop', crop_size=224),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=16, num_workers=4, persistent_workers=True, drop_last=True,
    dataset=dict(**iqa_data, split='train', pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True))
val_dataloader = dict(
    batch_size=32, num_workers=4, persistent_workers=True,
    dataset=dict(**iqa_data, split='test', pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
val_evaluator = dict(type='mmkd.IQAMetric')
test_dataloader = val_dataloader
test_evaluator = val_evaluator

max_epochs = 9
optim_wrapper = dict(optimizer=dict(type='AdamW', lr=2e-4, weight_decay=1e-2))
param_scheduler = dict(type='CosineAnnealingLR', by_epoch=True, T_max=max_epochs)
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=1)
val_cfg = dict()
test_cfg = dict()
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=1,
                                     save_best='iqa/srcc', rule='greater'))
auto_scale_lr = dict(base_batch_size=16)
