# Two teachers of different architectures, one student: the ResNet-34 (quarter width) and the
# WRN-16-2 digits teachers, their logits combined by EnsembleKD ('mean_prob': KD towards the
# average of their softened distributions, tau 4 and weight 1 as the one-teacher ./kd_...py).
_base_ = './_base_distill.py'

model = dict(
    teacher=None,
    teachers=dict(
        resnet=dict(config='{{ fileDirname }}/resnet34-wide_digits.py',
                    checkpoint='work_dirs/demo/digits/teacher.pth'),
        wrn=dict(config='{{ fileDirname }}/wrn-16-2_digits.py',
                 checkpoint='work_dirs/demo/digits/teacher_wrn.pth')),
    blocks=dict(
        logits=dict(student='head.fc', teacher=['resnet:head.fc', 'wrn:head.fc'],
                    method=dict(type='EnsembleKD', combine='mean_prob', tau=4.0),
                    loss_weight=1.0)))
