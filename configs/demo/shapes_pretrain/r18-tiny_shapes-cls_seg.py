# Backbone pretraining for the segmentation student of the pretrained-backbone variant: mmseg's
# ResNetV1c-18 (deep stem) at a quarter width, the backbone of
# configs/demo/shapes_seg/deeplabv3_r18-tiny-d8_shapes.py, on the shapes classification task of
# ./r18-tiny_shapes-cls_det.py (same data and schedule). Pretrained without dilation (strides
# 1, 2, 2, 2), as ImageNet backbones are (mmseg's open-mmlab://resnet18_v1c): dilation changes
# no weight, so the checkpoint loads unchanged into the dilated D8 backbone (the test checks
# the keys strictly), and the pretraining costs 4x less at stages 3 and 4.
_base_ = './r18-tiny_shapes-cls_det.py'
model = dict(backbone=dict(
    _delete_=True, type='mmseg.ResNetV1c', depth=18, num_stages=4, out_indices=(3, ),
    dilations=(1, 1, 1, 1), strides=(1, 2, 2, 2), norm_cfg=dict(type='BN', requires_grad=True),
    norm_eval=False, style='pytorch', contract_dilation=True, stem_channels=16,
    base_channels=16))
