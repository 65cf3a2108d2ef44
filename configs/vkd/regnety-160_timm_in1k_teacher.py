# The paper's ImageNet teacher, RegNetY-16GF ("regnety_160", DeiT's distillation teacher,
# top-1 82.9), as an mmpretrain classifier: mmpretrain has no RegNetY, so the backbone is timm's
# model through mmpretrain's TIMMBackbone wrapper (needs `pip install timm`), followed by
# mmpretrain's global pooling and linear head. Only used as a teacher model config.
default_scope = 'mmpretrain'
model = dict(
    type='ImageClassifier',
    backbone=dict(type='TIMMBackbone', model_name='regnety_160', pretrained=False),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes=1000, in_channels=3024,
              loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))
