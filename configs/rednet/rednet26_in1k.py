# RedNet-26 on ImageNet-1k (authors: 9.23 M parameters, top-1 75.96; tests check the count).
_base_ = './_base_rednet_in1k.py'
model = dict(backbone=dict(depth=26))
