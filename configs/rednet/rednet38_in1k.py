# RedNet-38 on ImageNet-1k (authors: 12.39 M parameters, top-1 77.48; tests check the count).
_base_ = './_base_rednet_in1k.py'
model = dict(backbone=dict(depth=38))
