# Co-advise's CNN teacher, RegNetY-4GF (timm "regnety_040"; the authors' main.py:
# timm.create_model("regnety_040") loaded from their conv_teacher.pth), as an mmpretrain
# classifier: mmpretrain has no RegNetY, so the backbone is timm's model through mmpretrain's
# TIMMBackbone wrapper (needs `pip install timm`), followed by global pooling and a linear head.
# Only used as a teacher model config.
default_scope = 'mmpretrain'
model = dict(
    type='ImageClassifier',
    backbone=dict(type='TIMMBackbone', model_name='regnety_040', pretrained=False),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes=1000, in_channels=1088,
              loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))
