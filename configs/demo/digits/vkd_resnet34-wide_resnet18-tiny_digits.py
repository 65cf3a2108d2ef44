# VkD (classification setting): the student's pooled feature (128) is mapped to the teacher's
# (256) by an orthogonal projector and matched, with smooth L1, to the teacher's pooled feature
# standardised per sample; the paper's objective also keeps a KL term at T = 1 on the logits.
_base_ = './_base_distill.py'

model = dict(
    blocks=dict(
        feat=dict(student='neck', teacher='neck',
                  method=dict(type='VkD', normalize='sample'), loss_weight=1.0),
        logits=dict(student='head.fc', teacher='head.fc',
                    method=dict(type='LogitKD', tau=1.0), loss_weight=1.0)))
