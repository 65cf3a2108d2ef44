# Shared by the self-distillation demo configs (not runnable on its own: it has no `blocks`):
# the digits baseline student, unchanged, in a distiller with no teacher at all; its blocks
# read the student itself (teacher points 'self:...'). A method config inherits this file and
# adds student_inserts and blocks (and may change the student, e.g. its CE weight).
_base_ = './resnet18-tiny_digits.py'

model = dict(
    _delete_=True,  # the base's `model` becomes the student below instead of being merged
    type='mmkd.Distiller',
    student={{_base_.model}},
    dry_run_input_shape=(2, 3, 16, 16))
