# Pretrained-backbone variant of the shapes detection demo (issue 33, part 6): the student
# baseline of configs/demo/shapes_det/retinanet_r18-tiny_fpn_shapes.py, unchanged but for its
# backbone's start: the weights pretrained on the shapes classification task
# (configs/demo/shapes_pretrain/r18-tiny_shapes-cls_det.py, mmkd.ShapesClsDataset: one shape
# per image from generator streams apart from the dense data), as real detectors start from
# ImageNet backbones. Same schedule and optimiser as the from-scratch demo, so the two variants
# differ only in the initialisation. tools/demo.py (task 'detection-pt') trains the pretraining
# once and passes its checkpoint's path with --cfg-options model.backbone.init_cfg.checkpoint=...;
# the path below is where it goes by default.
_base_ = '../shapes_det/retinanet_r18-tiny_fpn_shapes.py'
model = dict(backbone=dict(init_cfg=dict(
    _delete_=True,  # the base's init_cfg is None (from scratch)
    type='Pretrained', checkpoint='work_dirs/demo/shapes_pretrain/r18-tiny_det.pth',
    prefix='backbone.')))
