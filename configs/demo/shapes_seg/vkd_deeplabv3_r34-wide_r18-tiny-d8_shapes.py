# VkD (dense setting) on the last backbone stage: orthogonal projector 128 -> 256, student and
# teacher standardised per channel over all positions of the batch, smooth L1.
_base_ = './deeplabv3_r18-tiny-d8_shapes.py'

model = dict(
    _delete_=True,
    type='mmkd.SingleTeacherDistiller',
    student={{_base_.model}},
    teacher=dict(
        config='{{ fileDirname }}/deeplabv3_r34-wide-d8_shapes.py',
        checkpoint='work_dirs/demo/shapes_seg/teacher.pth'),
    blocks=dict(
        c5=dict(student='backbone.layer4', teacher='backbone.layer4',
                method=dict(type='VkD', normalize='batch'), loss_weight=1.0)),
    dry_run_input_shape=(2, 3, 64, 64))
