# Multi-task demo (b): the segmentation student learns from the *detection* teacher only (the
# shapes RetinaNet R-34 FPN of configs/demo/shapes_det, an mmdet model built in its own scope),
# RTK over the four backbone stages as in ./rtk_deeplabv3_r34-wide_r18-tiny-d8_shapes.py (a).
# The shapes images carry boxes and label maps, so both teachers saw the same pictures.
_base_ = './_base_distill.py'

model = dict(
    teacher=dict(
        _delete_=True,
        config='{{ fileDirname }}/../shapes_det/retinanet_r34-wide_fpn_shapes.py',
        checkpoint='work_dirs/demo/shapes_det/teacher.pth'),
    blocks=dict(
        stages=dict(student='backbone.layer*', teacher='backbone.layer*',
                    method=dict(type='RTK', selection='topk'), loss_weight=50.0)))
