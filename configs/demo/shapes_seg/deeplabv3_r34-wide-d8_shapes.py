# Teacher on the shapes label maps: DeepLabV3 R-34-D8 at half width.
_base_ = './deeplabv3_r18-tiny-d8_shapes.py'
model = dict(
    backbone=dict(depth=34, stem_channels=32, base_channels=32),
    decode_head=dict(in_channels=256, channels=64),
    auxiliary_head=dict(in_channels=128, channels=32))
