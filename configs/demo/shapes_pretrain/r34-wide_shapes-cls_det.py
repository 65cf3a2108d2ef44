# Backbone pretraining for the detection teacher of the pretrained-backbone variant: mmdet
# ResNet-34 at half width (the dict of configs/demo/shapes_det/retinanet_r34-wide_fpn_shapes.py)
# on the same shapes classification task and schedule as ./r18-tiny_shapes-cls_det.py.
_base_ = './r18-tiny_shapes-cls_det.py'
model = dict(backbone=dict(depth=34, base_channels=32, stem_channels=32),
             head=dict(in_channels=256))
