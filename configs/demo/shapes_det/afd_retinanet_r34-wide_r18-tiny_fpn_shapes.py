# AFD over the four backbone stages of each detector (candidates linked by attention).
# Weight 50: the AFD authors' CIFAR 200 scaled by the stage maps' ~4x fewer positions
# (16x16 at most here vs 32x32 on CIFAR; the loss averages over positions).
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
                    method=dict(type='AFD'), loss_weight=50.0)),
    dry_run_input_shape=(2, 3, 64, 64))
