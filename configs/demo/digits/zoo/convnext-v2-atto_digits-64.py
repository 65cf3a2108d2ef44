# Teacher for the zoo example: mmpretrain's ConvNeXt-V2 Atto (3.4 M parameters with 10
# classes), its model config unchanged but for the classes, on the upscaled digits (64x64),
# trained from scratch. Train it before the distillation config, which reads its checkpoint:
#     python tools/train.py configs/demo/digits/zoo/convnext-v2-atto_digits-64.py
# (writes work_dirs/convnext-v2-atto_digits-64/epoch_10.pth).
_base_ = [
    'mmpretrain::_base_/models/convnext_v2/atto.py',
    './_base_digits-64.py',
]
model = dict(head=dict(num_classes=10))
