# VkD (detection setting) on every FPN level: orthogonal projector 64 -> 128 with per-channel
# scale and bias, student and teacher standardised per channel over all positions of the
# batch, smooth L1, weight 4 (the paper's ViDT setting).
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
                 method=dict(type='VkD', normalize='batch', affine=True), loss_weight=4.0)),
    dry_run_input_shape=(2, 3, 64, 64))
