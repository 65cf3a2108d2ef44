# Logit KD (Hinton et al.): ResNet-34 (quarter width) teacher -> ResNet-18 (1/16 width) student.
_base_ = './_base_distill.py'

model = dict(
    blocks=dict(
        logits=dict(student='head.fc', teacher='head.fc',
                    method=dict(type='LogitKD', tau=4.0), loss_weight=1.0)))
