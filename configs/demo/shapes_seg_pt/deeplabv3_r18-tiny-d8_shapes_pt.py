# Pretrained-backbone variant of the shapes segmentation demo (issue 33, part 6): the student
# baseline of configs/demo/shapes_seg/deeplabv3_r18-tiny-d8_shapes.py, unchanged but for its
# backbone's start: the ResNetV1c weights pretrained (undilated, as ImageNet backbones are) on
# the shapes classification task (configs/demo/shapes_pretrain/r18-tiny_shapes-cls_seg.py),
# as real segmentors start from ImageNet backbones. Same schedule and optimiser as the
# from-scratch demo. tools/demo.py (task 'segmentation-pt') trains the pretraining once and
# passes its path with --cfg-options model.backbone.init_cfg.checkpoint=...; the path below is
# where it goes by default.
_base_ = '../shapes_seg/deeplabv3_r18-tiny-d8_shapes.py'
model = dict(backbone=dict(init_cfg=dict(
    type='Pretrained', checkpoint='work_dirs/demo/shapes_pretrain/r18-tiny_seg.pth',
    prefix='backbone.')))
