# Feature MSE on every FPN level (the projector sizes itself: 64 -> 128 channels per level).
_base_ = './retinanet_r18-tiny_fpn_shapes.py'

model = dict(
    _delete_=True,
    type='mmkd.SingleTeacherDistiller',
    student={{_base_.model}},
    teacher=dict(
        config='{{ fileDirname }}/retinanet_r34-wide_fpn_shapes.py',
        checkpoint='work_dirs/demo/shapes_det/teacher.pth'),
    blocks=dict(
        fpn=dict(student='neck', teacher='neck',
                 method=dict(type='FeatureMSE'), loss_weight=1.0)),
    dry_run_input_shape=(2, 3, 64, 64))
