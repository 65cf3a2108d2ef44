# rtk on the pretrained-backbone shapes detection variant (issue 33):
# the from-scratch config (first base) with the variant's backbones and teacher (second).
_base_ = ['../shapes_det/rtk_retinanet_r34-wide_r18-tiny_fpn_shapes.py', './_base_variant.py']
model = {{_base_.variant_model}}
