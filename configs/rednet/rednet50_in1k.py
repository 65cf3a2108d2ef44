# RedNet-50 on ImageNet-1k (authors: 15.54 M parameters, top-1 78.35; tests check the count).
_base_ = './_base_rednet_in1k.py'
model = dict(backbone=dict(depth=50))
