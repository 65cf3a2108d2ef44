# Feature MSE on the last backbone stage (student 128 -> teacher 256 channels through an
# auto-sized 1x1 projector), added to the student's own losses.
_base_ = './_base_distill.py'

model = dict(
    blocks=dict(
        c5=dict(student='backbone.layer4', teacher='backbone.layer4',
                method=dict(type='FeatureMSE'), loss_weight=1.0)))
