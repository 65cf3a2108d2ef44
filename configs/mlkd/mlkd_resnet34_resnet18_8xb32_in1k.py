# MLKD on ImageNet-1k: ResNet-34 teacher (top-1 73.62) -> ResNet-18 student (69.90): the pair,
# checkpoint and mmpretrain recipe of ../kd/kd_resnet34_resnet18_8xb32_in1k.py (100 epochs, SGD
# lr 0.1, batch 256 = 8 x 32 items, i.e. 2 x 256 images a step) with the logits block's method
# swapped. MLKD as the authors' configs/imagenet/r34_r18/kd_ours.yaml (Jin-Ying/
# Multi-Level-Logit-Distillation 5ee473f): temperatures (1, 3, 5, 2, 6), KD_WEIGHT 0.5 (the
# block's loss_weight), CE_WEIGHT 0.5 on each view (the student head's loss_weight 1.0 on the
# mean over both views); there: batch 512, lr 0.1, the same schedule. Views as their
# get_imagenet_train_transform_strong: weak = RandomResizedCrop 224 + flip; strong = its own
# crop + flip + RandAugment (2 ops, random magnitude) + a cutout of random size (0-112 px, grey;
# BGR here), mmpretrain's RandAugment and Cutout standing in for their FixMatch-style one.
# The MLKD paper reports 71.90 (README.md).
_base_ = '../kd/kd_resnet34_resnet18_8xb32_in1k.py'

weak = [dict(type='RandomResizedCrop', scale=224),
        dict(type='RandomFlip', prob=0.5, direction='horizontal')]
strong = weak + [
    dict(type='RandAugment', policies='timm_increasing', num_policies=2, total_level=10,
         magnitude_level=10, magnitude_std='inf', hparams=dict(pad_val=0)),
    dict(type='Cutout', magnitude_range=(0, 112), magnitude_level=10, total_level=10,
         magnitude_std='inf', pad_val=(114, 123, 125), prob=1.0),
]
train_dataloader = dict(
    collate_fn=dict(type='mmkd.multiview_collate'),
    dataset=dict(pipeline=[dict(type='LoadImageFromFile'),
                           dict(type='mmkd.MultiViews', views=[weak, strong]),
                           dict(type='PackInputs')]))

model = dict(
    student=dict(head=dict(loss=dict(loss_weight=1.0))),
    blocks=dict(logits=dict(
        method=dict(_delete_=True, type='MLKD', tau=1.0), loss_weight=0.5)))
