# RedNet-152 on ImageNet-1k (authors: 33.99 M parameters, top-1 79.12; tests check the count).
_base_ = './_base_rednet_in1k.py'
model = dict(backbone=dict(depth=152))
