# No-reference involution network on the IQA demo set: the inv token's teacher of the
# inductive-bias tokens (RKIQT's involution teacher; Co-advise's RedNet at demo size). RedNet-26
# at a quarter width (as configs/demo/digits/rednet-tiny_digits.py), stem stride 1 and the
# max-pool, on the 32x32 crops. Data and recipe: resnet18-tiny_synthetic-iqa.py.
_base_ = './resnet18-tiny_synthetic-iqa.py'
model = dict(
    backbone=dict(_delete_=True, type='RedNet', depth=26, stem_channels=32, base_channels=16,
                  stem_stride=1, stem_maxpool=True, strides=(1, 2, 2, 2), out_indices=(3, )),
    head=dict(in_channels=512))
