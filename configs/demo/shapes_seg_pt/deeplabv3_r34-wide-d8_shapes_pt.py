# Teacher of the pretrained-backbone shapes segmentation variant: the demo teacher
# (configs/demo/shapes_seg/deeplabv3_r34-wide-d8_shapes.py, same schedule) with its backbone
# pretrained on the shapes classification task
# (configs/demo/shapes_pretrain/r34-wide_shapes-cls_seg.py). See
# ./deeplabv3_r18-tiny-d8_shapes_pt.py for the variant's design.
_base_ = '../shapes_seg/deeplabv3_r34-wide-d8_shapes.py'
model = dict(backbone=dict(init_cfg=dict(
    type='Pretrained', checkpoint='work_dirs/demo/shapes_pretrain/r34-wide_seg.pth',
    prefix='backbone.')))
