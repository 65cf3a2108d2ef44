# Logit KD (tau 4, as ./kd_*.py) from the digits teacher trained with label smoothing 0.1
# (./resnet34-wide-ls_digits.py): the standard ablation of label smoothing and KD. Compare with
# ./kd_*.py, the same block from the same teacher trained without it.
_base_ = './_base_distill.py'

model = dict(
    teacher=dict(_delete_=True, config='{{ fileDirname }}/resnet34-wide-ls_digits.py',
                 checkpoint='work_dirs/demo/digits/teacher_ls.pth'),
    blocks=dict(
        logits=dict(student='head.fc', teacher='head.fc',
                    method=dict(type='LogitKD', tau=4.0), loss_weight=1.0)))
