# Logit KD (Hinton et al.): ResNet-34 (half width) teacher -> ResNet-18 (quarter width) student.
_base_ = './resnet18-tiny_digits.py'

model = dict(
    _delete_=True,
    type='mmkd.SingleTeacherDistiller',
    student={{_base_.model}},
    teacher=dict(
        config='{{ fileDirname }}/resnet34-wide_digits.py',
        checkpoint='work_dirs/demo/digits/teacher.pth'),
    blocks=dict(
        logits=dict(student='head.fc', teacher='head.fc',
                    method=dict(type='LogitKD', tau=4.0), loss_weight=1.0)),
    dry_run_input_shape=(2, 3, 16, 16))
