# The non-aligned-reference (NAR) teacher of RKIQT on the IQA demo set: it sees the distorted
# image AND a pristine crop of another photograph (drawn from the training photos' references,
# never a test one: SyntheticIQADataset(non_aligned_refs='train')), stacked on channels
# (mmkd.StackImages -> (32, 32, 6)); one shared CIFAR ResNet-18 (quarter width) runs on both and
# mmkd.NonAlignedReferenceBackbone returns cat(f_lq, f_hq - f_lq), the HQ-LQ difference features
# the student's masked generator reconstructs (record point 'backbone.difference').
_base_ = './resnet18-tiny_synthetic-iqa.py'

model = dict(
    backbone=dict(_delete_=True, type='NonAlignedReferenceBackbone', fuse='concat',
                  backbone={{_base_.model.backbone}}),
    head=dict(in_channels=256))
# Six channels in load order (BGR | BGR); a multi-source input is never channel-flipped.
data_preprocessor = dict(_delete_=True, mean=[103.53, 116.28, 123.675] * 2,
                         std=[57.375, 57.12, 58.395] * 2, to_rgb=False)

nar_data = dict(non_aligned_refs='train')
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='mmkd.LoadImageFromFileAs', key='nar_img', path_key='nar_path'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='mmkd.StackImages', keys=['img', 'nar_img']),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='mmkd.LoadImageFromFileAs', key='nar_img', path_key='nar_path'),
    dict(type='mmkd.StackImages', keys=['img', 'nar_img']),
    dict(type='PackInputs'),
]
train_dataloader = dict(dataset=dict(**nar_data, pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(**nar_data, pipeline=test_pipeline))
test_dataloader = val_dataloader
