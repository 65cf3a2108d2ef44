# AFD over the four backbone stages of each segmentor (candidates linked by attention).
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
                    method=dict(type='AFD'), loss_weight=200.0)),
    dry_run_input_shape=(2, 3, 64, 64))
