# Feature MSE (FitNet hints) on the last backbone stage, plus logit KD.
_base_ = './resnet18-tiny_digits.py'

model = dict(
    _delete_=True,
    type='mmkd.SingleTeacherDistiller',
    student={{_base_.model}},
    teacher=dict(
        config='{{ fileDirname }}/resnet34-wide_digits.py',
        checkpoint='work_dirs/demo/digits/teacher.pth'),
    blocks=dict(
        stage4=dict(student='backbone.layer4', teacher='backbone.layer4',
                    method=dict(type='FeatureMSE'), loss_weight=1.0),
        logits=dict(student='head.fc', teacher='head.fc',
                    method=dict(type='LogitKD', tau=4.0), loss_weight=1.0)),
    dry_run_input_shape=(2, 3, 16, 16))
