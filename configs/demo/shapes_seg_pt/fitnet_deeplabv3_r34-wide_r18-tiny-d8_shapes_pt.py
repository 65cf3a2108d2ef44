# fitnet on the pretrained-backbone shapes segmentation variant (issue 33):
# the from-scratch config (first base) with the variant's backbones and teacher (second).
_base_ = ['../shapes_seg/fitnet_deeplabv3_r34-wide_r18-tiny-d8_shapes.py', './_base_variant.py']
model = {{_base_.variant_model}}
