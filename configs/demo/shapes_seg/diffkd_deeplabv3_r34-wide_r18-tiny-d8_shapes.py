# DiffKD on the prediction maps (4 classes, 1/8 resolution) with the DIST distance, no
# autoencoder, as in the paper's Cityscapes setting.
_base_ = './deeplabv3_r18-tiny-d8_shapes.py'

model = dict(
    _delete_=True,
    type='mmkd.SingleTeacherDistiller',
    student={{_base_.model}},
    teacher=dict(
        config='{{ fileDirname }}/deeplabv3_r34-wide-d8_shapes.py',
        checkpoint='work_dirs/demo/shapes_seg/teacher.pth'),
    blocks=dict(
        logits=dict(student='decode_head.conv_seg', teacher='decode_head.conv_seg',
                    method=dict(type='DiffKD', distance=dict(type='dist', beta=1.0, gamma=1.0)),
                    loss_weight=1.0)),
    dry_run_input_shape=(2, 3, 64, 64))
