# DiffKD on every FPN level (student 64 -> teacher 128 channels through DiffKD's own 1x1
# `trans`), no autoencoder, MSE, loss weight 5 as in the paper's RetinaNet setting.
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
                 method=dict(type='DiffKD', distance='mse'), loss_weight=5.0)),
    dry_run_input_shape=(2, 3, 64, 64))
