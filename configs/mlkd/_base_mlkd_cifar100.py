# MLKD's CIFAR-100 recipe, shared by configs/mlkd/mlkd_*_cifar100.py (each adds its pair's
# distiller base): the authors' (Jin-Ying/Multi-Level-Logit-Distillation 5ee473f,
# configs/cifar100/ours/*.yaml with the CFG.KD defaults of mdistiller/engine/cfg.py,
# tools/train_ours.py): temperatures (4, 3, 5, 2, 6), KD_WEIGHT 0.9 (the block's loss_weight),
# CE_WEIGHT 0.1 on each view (the student head's loss_weight 0.2 on the mean over the 2B
# images), SGD lr 0.025 (their configs; the shared recipe has 0.05), batch 64 images per view,
# 240 epochs, x0.1 at 150, 180, 210.
# Views (mdistiller/dataset/cifar100.py get_cifar100_train_transform_strong): weak = crop 32
# pad 4 + flip; strong = its own crop + flip + RandAugment(2 ops, random magnitude) + a cutout
# of random size (0-16 px, grey). mmpretrain's RandAugment ('timm_increasing') and Cutout stand
# in for the authors' FixMatch-style RandAugment: a similar, not identical, op list.
# Not runnable alone: a pair config lists it after its distiller base and reads the mlkd_*
# values below as {{_base_.mlkd_*}} (two bases may not set the same key).
mlkd_weak = [dict(type='RandomCrop', crop_size=32, padding=4),
             dict(type='RandomFlip', prob=0.5, direction='horizontal')]
mlkd_strong = mlkd_weak + [
    dict(type='RandAugment', policies='timm_increasing', num_policies=2, total_level=10,
         magnitude_level=10, magnitude_std='inf', hparams=dict(pad_val=0)),
    dict(type='Cutout', magnitude_range=(0, 16), magnitude_level=10, total_level=10,
         magnitude_std='inf', pad_val=(125, 123, 114), prob=1.0),
]
mlkd_train_dataloader = dict(
    collate_fn=dict(type='mmkd.multiview_collate'),
    dataset=dict(pipeline=[dict(type='mmkd.MultiViews', views=[mlkd_weak, mlkd_strong]),
                           dict(type='PackInputs')]))
mlkd_optim_wrapper = dict(optimizer=dict(lr=0.025))
mlkd_model = dict(
    student=dict(head=dict(loss=dict(loss_weight=0.2))),
    blocks=dict(logits=dict(student='head.fc', teacher='head.fc',
                            method=dict(type='MLKD', tau=4.0), loss_weight=0.9)))
