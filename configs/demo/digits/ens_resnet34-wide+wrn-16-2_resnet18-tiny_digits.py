# Two teachers of different architectures, one student: the ResNet-34 (quarter width) and the
# WRN-16-2 digits teachers, their logits combined by EnsembleKD at tau 4 and weight 1 (as the
# one-teacher ./kd_...py). combine='mean_logit' was chosen on the tune split, seed 0
# (docs/benchmarks.md, "Several teachers"): mean_logit 88.5, sum_kl 86.7, mean_prob 86.3;
# one teacher: KD from the ResNet-34 87.0, from the WRN-16-2 90.0.
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
                    method=dict(type='EnsembleKD', combine='mean_logit', tau=4.0),
                    loss_weight=1.0)))
