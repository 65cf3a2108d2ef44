# Teacher of the pretrained-backbone shapes detection variant: the demo teacher
# (configs/demo/shapes_det/retinanet_r34-wide_fpn_shapes.py, same schedule) with its backbone
# pretrained on the shapes classification task
# (configs/demo/shapes_pretrain/r34-wide_shapes-cls_det.py). See
# ./retinanet_r18-tiny_fpn_shapes_pt.py for the variant's design.
_base_ = '../shapes_det/retinanet_r34-wide_fpn_shapes.py'
model = dict(backbone=dict(init_cfg=dict(
    _delete_=True,  # the base's init_cfg is None (from scratch)
    type='Pretrained', checkpoint='work_dirs/demo/shapes_pretrain/r34-wide_det.pth',
    prefix='backbone.')))
