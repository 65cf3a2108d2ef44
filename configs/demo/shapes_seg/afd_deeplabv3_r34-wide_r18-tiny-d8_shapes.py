# AFD over the four backbone stages of each segmentor (candidates linked by attention).
# Weight 50: the AFD authors' CIFAR 200 scaled by the stage maps' ~4x fewer positions
# (16x16 at most here vs 32x32 on CIFAR; the loss averages over positions).
_base_ = './deeplabv3_r18-tiny-d8_shapes.py'

model = dict(
    _delete_=True,
    type='mmkd.SingleTeacherDistiller',
    student={{_base_.model}},
    teacher=dict(
        config='{{ fileDirname }}/deeplabv3_r34-wide-d8_shapes.py',
        checkpoint='work_dirs/demo/shapes_seg/teacher.pth'),
    blocks=dict(
        stages=dict(student='backbone.layer*', teacher='backbone.layer*',
                    method=dict(type='AFD'), loss_weight=50.0)),
    dry_run_input_shape=(2, 3, 64, 64))
