# RedNet-101 on ImageNet-1k (authors: 25.65 M parameters, top-1 78.92; tests check the count).
_base_ = './_base_rednet_in1k.py'
model = dict(backbone=dict(depth=101))
