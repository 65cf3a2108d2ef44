# TAKD (Mirzadeh et al., AAAI 2020), stage 1 of 2: the digits teacher (CIFAR ResNet-34, quarter
# width, 1.3 M parameters) -> the teacher assistant, WRN-16-2 (0.69 M; the demo's second teacher
# architecture, ../wrn-16-2_digits.py, unchanged). The same logit-KD block as plain KD
# (../kd_resnet34-wide_resnet18-tiny_digits.py: tau 4, weight 1, plus the student's CE), so the
# chain differs from plain KD by the assistant alone. The chain, in order (docs/methods/takd.md):
#   python tools/train.py configs/demo/digits/resnet34-wide_digits.py  # the teacher (or make demo)
#   python tools/train.py configs/demo/digits/takd/takd-ta_resnet34-wide_wrn-16-2_digits.py
#   python tools/model_converters/extract_student.py \
#       work_dirs/takd-ta_resnet34-wide_wrn-16-2_digits/epoch_10.pth \
#       work_dirs/takd-ta_resnet34-wide_wrn-16-2_digits/ta_exported.pth
#   python tools/train.py configs/demo/digits/takd/takd_wrn-16-2_resnet18-tiny_digits.py  # stage 2
# The teacher is read from work_dirs/demo/digits/teacher.pth (what tools/demo.py trains; with
# tools/train.py alone pass --cfg-options model.teacher.checkpoint=work_dirs/resnet34-wide_digits/
# epoch_10.pth). The chain is in a sub-folder, not a column of the quality grid (the grid cannot
# chain an exported assistant); `student_baseline` names the assistant trained alone.
_base_ = '../wrn-16-2_digits.py'

model = dict(
    _delete_=True,  # the base's `model` becomes the student below instead of being merged
    type='mmkd.Distiller',
    student={{_base_.model}},
    teacher=dict(
        config='{{ fileDirname }}/../resnet34-wide_digits.py',
        checkpoint='work_dirs/demo/digits/teacher.pth'),
    dry_run_input_shape=(2, 3, 16, 16),
    blocks=dict(
        logits=dict(student='head.fc', teacher='head.fc',
                    method=dict(type='LogitKD', tau=4.0), loss_weight=1.0)))

# This row's student is the assistant: the grid compares it with the assistant alone.
student_baseline = 'configs/demo/digits/wrn-16-2_digits.py'
