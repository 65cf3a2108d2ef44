# Plain ViT student on the digits demo data (DeiT at demo size): 4x4 linear patches of the
# 16x16 digit (a 4x4 grid of tokens), a class token, 4 layers of width 32 (2 heads, MLP 64),
# one linear head; cross-entropy alone. Baseline (a) of docs/methods/ib_tokens.md.
# Recipe: AdamW, weight decay 0.05 but none on norms, biases, tokens and position embedding
# (DeiT's rules), cosine per iteration. Chosen on the tune split, seed 0 (docs/benchmarks.md,
# "Inductive-bias tokens"): 30 epochs at lr 1e-3 / 2e-3 / 4e-3: 38.1 / 45.2 / 48.9; 60 epochs
# at 2e-3 / 4e-3: 79.3 / 80.7; 100 epochs at 2e-3: 87.8. At 60 epochs the CivT architecture
# alone (civt-tiny_digits.py) already equals the CNN teacher (92.96 and 92.96), which leaves its
# distillation nothing to judge; at 30 epochs it scores 77.4. So: 30 epochs, lr 4e-3, a short
# schedule in which both ViTs stay well below their teachers.
_base_ = './resnet18-tiny_digits.py'

vit_arch = dict(embed_dims=32, num_layers=4, num_heads=2, feedforward_channels=64)
model = dict(
    _delete_=True,
    type='ImageClassifier',
    backbone=dict(
        type='StemTokenViT', arch=vit_arch, img_size=16,
        stems=[dict(name='patch', type='LinearPatchStem', patch_size=4)],
        tokens=[dict(name='cls', type='learned')]),
    neck=None,
    head=dict(type='MultiTokenClsHead', num_classes=10, in_channels=32, tokens=('cls', ),
              loss_weights=dict(cls=1.0)))

max_epochs = 30
optim_wrapper = dict(
    _delete_=True,
    optimizer=dict(type='AdamW', lr=4e-3, weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0,
                       custom_keys={'.cls_token': dict(decay_mult=0.0),
                                    '.dist_token': dict(decay_mult=0.0),
                                    '.pos_embed': dict(decay_mult=0.0)}))
param_scheduler = dict(_delete_=True, type='CosineAnnealingLR', by_epoch=True, T_max=max_epochs,
                       eta_min=1e-5, convert_to_iter_based=True)
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=max_epochs)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=max_epochs,
                                     max_keep_ckpts=1))
