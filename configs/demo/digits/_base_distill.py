# Shared by every distillation config in this folder (not runnable on its own: it has no
# `blocks`). The student is the digits baseline, unchanged; the teacher is the quarter-width
# ResNet-34 that tools/demo.py trains once. A method config inherits this file and adds only
#     model = dict(blocks=dict(<name>=dict(student=..., teacher=..., method=..., loss_weight=...)))
_base_ = './resnet18-tiny_digits.py'

model = dict(
    _delete_=True,  # the base's `model` becomes the student below instead of being merged
    type='mmkd.Distiller',
    student={{_base_.model}},
    teacher=dict(
        config='{{ fileDirname }}/resnet34-wide_digits.py',
        checkpoint='work_dirs/demo/digits/teacher.pth'),
    dry_run_input_shape=(2, 3, 16, 16))
