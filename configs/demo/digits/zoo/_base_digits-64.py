# The digits demo data (configs/demo/digits/resnet18-tiny_digits.py: the same 1,797 digits,
# split, warp and noise) upscaled to 64x64 for zoo backbones of stride 32, and a short CPU
# schedule. Shared by the zoo configs in this folder (a file named `_base_*` is never run).
_base_ = 'mmpretrain::_base_/default_runtime.py'
custom_imports = dict(imports=['mmkd'], allow_failed_imports=False)

# `img_size` is the one size setting: the dataset upscales to it, and every size below (the
# crop, its padding, the distiller's dry run) reads it. An ImageNet backbone of stride 32 turns
# 64x64 into a 2x2 last stage; the demo's 16x16 would give 1x1 or fail (ConvNeXt's last
# downsampling needs 2x2). `draw_size` keeps the demo's digits: they are drawn and distorted at
# 16x16 (the distortion is in pixels) and only then resized.
img_size = 64
draw_size = 16
distortion = dict(rotate=20.0, scale=0.1, shear=10.0, translate=0.08, elastic_alpha=1.5,
                  noise_std=20.0)  # the demo's, see ../resnet18-tiny_digits.py

data_preprocessor = dict(num_classes=10, mean=[78.0] * 3, std=[82.6] * 3, to_rgb=False)
train_pipeline = [
    dict(type='RandomCrop', crop_size=img_size, padding=img_size // 8),
    dict(type='PackInputs'),
]
test_pipeline = [dict(type='PackInputs')]
train_dataloader = dict(
    batch_size=64, num_workers=0, persistent_workers=False, drop_last=True,
    dataset=dict(type='mmkd.DigitsDataset', split='train', img_size=img_size,
                 draw_size=draw_size, distortion=distortion, pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True))
val_dataloader = dict(
    batch_size=128, num_workers=0, persistent_workers=False,
    dataset=dict(type='mmkd.DigitsDataset', split='test', img_size=img_size,
                 draw_size=draw_size, distortion=distortion, pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_dataloader = val_dataloader
test_evaluator = val_evaluator

max_epochs = 10
optim_wrapper = dict(optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.05))
param_scheduler = dict(type='CosineAnnealingLR', by_epoch=True, T_max=max_epochs)
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=max_epochs)
val_cfg = dict()
test_cfg = dict()
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(type='CheckpointHook', interval=max_epochs, max_keep_ckpts=1))
randomness = dict(seed=0, deterministic=False)
