# Shared by every distillation config in this folder (not runnable on its own: it has no
# `blocks`). The student is the shapes DeepLabV3 R-18-D8 baseline, unchanged; the teacher is
# the half-width R-34-D8 DeepLabV3 that tools/demo.py trains once. A method config inherits
# this file and adds only
#     model = dict(blocks=dict(<name>=dict(student=..., teacher=..., method=..., loss_weight=...)))
_base_ = './deeplabv3_r18-tiny-d8_shapes.py'

model = dict(
    _delete_=True,  # the base's `model` becomes the student below instead of being merged
    type='mmkd.Distiller',
    student={{_base_.model}},
    teacher=dict(
        config='{{ fileDirname }}/deeplabv3_r34-wide-d8_shapes.py',
        checkpoint='work_dirs/demo/shapes_seg/teacher.pth'),
    dry_run_input_shape=(2, 3, 64, 64))
