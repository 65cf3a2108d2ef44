# Shared by every distillation config in this folder (not runnable on its own: it has no
# `blocks`). The student is the shapes RetinaNet R-18 baseline, unchanged; the teacher is the
# half-width R-34 RetinaNet that tools/demo.py trains once. A method config inherits this file
# and adds only
#     model = dict(blocks=dict(<name>=dict(student=..., teacher=..., method=..., loss_weight=...)))
_base_ = './retinanet_r18-tiny_fpn_shapes.py'

model = dict(
    _delete_=True,  # the base's `model` becomes the student below instead of being merged
    type='mmkd.Distiller',
    student={{_base_.model}},
    teacher=dict(
        config='{{ fileDirname }}/retinanet_r34-wide_fpn_shapes.py',
        checkpoint='work_dirs/demo/shapes_det/teacher.pth'),
    dry_run_input_shape=(2, 3, 64, 64))
