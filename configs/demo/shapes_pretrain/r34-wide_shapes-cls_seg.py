# Backbone pretraining for the segmentation teacher of the pretrained-backbone variant: mmseg's
# ResNetV1c-34 at half width (configs/demo/shapes_seg/deeplabv3_r34-wide-d8_shapes.py's
# backbone), undilated, as ./r18-tiny_shapes-cls_seg.py.
_base_ = './r18-tiny_shapes-cls_seg.py'
model = dict(backbone=dict(depth=34, stem_channels=32, base_channels=32),
             head=dict(in_channels=256))
