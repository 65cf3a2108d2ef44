# RKIQT's non-aligned-reference (NAR) teacher on LIVEC: it sees the distorted image AND a
# pristine image of other content stacked on channels (mmkd.StackImages -> 6 channels), one
# shared ImageNet ResNet-50 runs on both, mmkd.NonAlignedReferenceBackbone returns
# cat(f_lq, f_hq - f_lq) (record point 'backbone.difference' = f_hq - f_lq, (B, 2048, 7, 7)).
# LIVEC has no references: the pool is a folder of pristine images of another set. Ours:
# KADID-10k's 81 references (`mkdir -p data/nar_refs && cp data/kadid10k/images/I??.png
# data/nar_refs/`); RKIQT draws from a pristine pool it does not name in what we could read.
_base_ = './resnet50_livec.py'

model = dict(
    backbone=dict(_delete_=True, type='NonAlignedReferenceBackbone', fuse='concat',
                  backbone={{_base_.model.backbone}}),
    head=dict(in_channels=4096))
# Six channels in load order (BGR | BGR); a multi-source input is never channel-flipped.
data_preprocessor = dict(_delete_=True, mean=[103.53, 116.28, 123.675] * 2,
                         std=[57.375, 57.12, 58.395] * 2, to_rgb=False)

nar_data = dict(non_aligned_refs='data/nar_refs')
# The reference is cropped on its own (a non-aligned image: no shared crop box).
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomCrop', crop_size=224),
    dict(type='mmkd.LoadImageFromFileAs', key='nar_img', path_key='nar_path',
         transforms=[dict(type='RandomCrop', crop_size=224)]),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='mmkd.StackImages', keys=['img', 'nar_img']),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='mmkd.LoadImageFromFileAs', key='nar_img', path_key='nar_path',
         transforms=[dict(type='CenterCrop', crop_size=224)]),
    dict(type='mmkd.StackImages', keys=['img', 'nar_img']),
    dict(type='PackInputs'),
]
train_dataloader = dict(dataset=dict(**nar_data, pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(**nar_data, pipeline=test_pipeline))
test_dataloader = val_dataloader
