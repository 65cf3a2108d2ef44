# Multi-task demo (c): the segmentation student learns from two teachers of two tasks and
# packages at once, the segmentation teacher (mmseg) and the detection teacher (mmdet), one RTK
# block each over the four backbone stages, each at the weight it has alone ((a) and (b): the
# losses add up, the base case of several teachers).
_base_ = './_base_distill.py'

model = dict(
    teacher=None,
    teachers=dict(
        seg=dict(config='{{ fileDirname }}/deeplabv3_r34-wide-d8_shapes.py',
                 checkpoint='work_dirs/demo/shapes_seg/teacher.pth'),
        det=dict(config='{{ fileDirname }}/../shapes_det/retinanet_r34-wide_fpn_shapes.py',
                 checkpoint='work_dirs/demo/shapes_det/teacher.pth')),
    blocks=dict(
        seg_stages=dict(student='backbone.layer*', teacher='seg:backbone.layer*',
                        method=dict(type='RTK', selection='topk'), loss_weight=50.0),
        det_stages=dict(student='backbone.layer*', teacher='det:backbone.layer*',
                        method=dict(type='RTK', selection='topk'), loss_weight=50.0)))
