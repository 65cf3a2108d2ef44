# Inductive-bias-token distillation into CivT-Ti (DeiT-Tiny width): the CivT-S config of
# ./civt-s_regnety-040_rednet-101_in1k.py with the student of ./civt-ti_in1k.py; teachers,
# blocks and recipe unchanged.
_base_ = './civt-s_regnety-040_rednet-101_in1k.py'

model = dict(student=dict(backbone=dict(arch='deit-tiny'), head=dict(in_channels=192)))
