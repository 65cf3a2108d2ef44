# RedNet on ImageNet-1k, the authors' recipe (d-li14/involution, cls/configs/rednet/
# rednet*_b32x64_warmup_coslr_imagenet.py) in MMEngine terms: 64 GPUs x 32 images, SGD + Nesterov
# lr 0.8, momentum 0.9, weight decay 1e-4, label smoothing 0.1, 130 epochs, linear warm-up over
# 3,130 iterations from 0.25 x lr, cosine to 0. Depth-specific files set backbone.depth.
# Also the model config of the involution teacher of the inductive-bias-token distillation.
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs32.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['mmkd'], allow_failed_imports=False)

model = dict(
    type='ImageClassifier',
    backbone=dict(type='RedNet', depth=50, num_stages=4, out_indices=(3, ), style='pytorch'),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes=1000, in_channels=2048,
              loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, loss_weight=1.0),
              topk=(1, 5)))

optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.8, momentum=0.9, weight_decay=1e-4, nesterov=True))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.25, by_epoch=False, begin=0, end=3130),
    dict(type='CosineAnnealingLR', T_max=130, eta_min=0.0, by_epoch=True, begin=0, end=130),
]
train_cfg = dict(by_epoch=True, max_epochs=130, val_interval=1)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=2048)
