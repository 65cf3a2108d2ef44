# Backbone pretraining of the shapes demo's pretrained-backbone variant (issue 33, part 6): the
# detection student's backbone (mmdet ResNet-18 at a quarter width, exactly the dict of
# configs/demo/shapes_det/retinanet_r18-tiny_fpn_shapes.py) under an mmpretrain
# ImageClassifier (global average pooling, linear head), trained on mmkd.ShapesClsDataset:
# one shape per 32x32 crop (at the dense data's 10-28 px sizes), label = its class, drawn from
# generator streams apart from the dense shapes data (no dense train/val/tune image is seen):
# the "ImageNet" of this demo.
# tools/demo.py trains it once per work dir (like the demo teachers: fingerprinted, reused) and
# the variant's configs (configs/demo/shapes_det_pt, shapes_seg_pt) load its `backbone.*` keys
# with init_cfg=dict(type='Pretrained', prefix='backbone.').
#
# Schedule: AdamW, lr 2e-3 (the detection demo's optimiser), batch 32, 400 iterations (~8.5
# epochs of the 1,500 images), linear warm-up and cosine decay; about a minute of CPU on one
# thread for the r34-wide backbones, less for r18-tiny. 150 iterations on 64 px images left the
# r34-wide backbone at chance (36.7 %); 400 on 32 px crops reached 85 % (val). Scored on the
# 300 `val` images of the same task.
_base_ = 'mmpretrain::_base_/default_runtime.py'
custom_imports = dict(imports=['mmkd', 'mmkd.datasets.shapes_cls'], allow_failed_imports=False)

# The dense backbone's dict, its scope named: this config builds under mmpretrain's scope.
backbone = dict(type='mmdet.ResNet', depth=18, num_stages=4, out_indices=(3, ),
                frozen_stages=-1, norm_cfg=dict(type='BN', requires_grad=True),
                norm_eval=False, style='pytorch', init_cfg=None, base_channels=16,
                stem_channels=16)
model = dict(
    type='ImageClassifier',
    backbone=backbone,
    neck=dict(type='GlobalAveragePooling'),
    # in_channels: the last stage's width, 8 x base_channels.
    head=dict(type='LinearClsHead', num_classes=3, in_channels=128,
              loss=dict(type='CrossEntropyLoss', loss_weight=1.0), topk=(1, )))
# The dense configs' normalisation (ImageNet statistics, BGR images turned to RGB).
data_preprocessor = dict(num_classes=3, mean=[123.675, 116.28, 103.53],
                         std=[58.395, 57.12, 57.375], to_rgb=True)

train_pipeline = [dict(type='RandomFlip', prob=0.5, direction='horizontal'),
                  dict(type='PackInputs')]
test_pipeline = [dict(type='PackInputs')]
train_dataloader = dict(
    batch_size=32, num_workers=0, persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type='mmkd.ShapesClsDataset', split='train', img_size=32,
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=100, num_workers=0, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='mmkd.ShapesClsDataset', split='val', img_size=32,
                 pipeline=test_pipeline))
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_dataloader = val_dataloader
test_evaluator = val_evaluator

max_iters = 400
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict()
test_cfg = dict()
optim_wrapper = dict(optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.05),
                     clip_grad=dict(max_norm=10, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=15),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=0, end=max_iters, T_max=max_iters,
         eta_min=2e-5),
]
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=25),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters,
                    max_keep_ckpts=1))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0, deterministic=False)
