# Logit KD from the second digits teacher alone (WRN-16-2), the reference for the ensemble of
# ./ens_resnet34-wide+wrn-16-2_resnet18-tiny_digits.py: same block as ./kd_...py, other teacher.
_base_ = './_base_distill.py'

model = dict(
    teacher=dict(_delete_=True, config='{{ fileDirname }}/wrn-16-2_digits.py',
                 checkpoint='work_dirs/demo/digits/teacher_wrn.pth'),
    blocks=dict(
        logits=dict(student='head.fc', teacher='head.fc',
                    method=dict(type='LogitKD', tau=4.0), loss_weight=1.0)))
