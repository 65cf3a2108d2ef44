# RTK over the four backbone stages of each detector (candidates linked by attention).
_base_ = './retinanet_r18-tiny_fpn_shapes.py'

model = dict(
    _delete_=True,
    type='mmkd.SingleTeacherDistiller',
    student={{_base_.model}},
    teacher=dict(
        config='{{ fileDirname }}/retinanet_r34-wide_fpn_shapes.py',
        checkpoint='work_dirs/demo/shapes_det/teacher.pth'),
    blocks=dict(
        stages=dict(student='backbone.layer*', teacher='backbone.layer*',
                    method=dict(type='RTK', selection='topk'), loss_weight=200.0)),
    dry_run_input_shape=(2, 3, 64, 64))
