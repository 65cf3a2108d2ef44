# Feature MSE (FitNet hints) on the last backbone stage, plus logit KD.
_base_ = './_base_distill.py'

model = dict(
    blocks=dict(
        stage4=dict(student='backbone.layer4', teacher='backbone.layer4',
                    method=dict(type='FeatureMSE'), loss_weight=1.0),
        logits=dict(student='head.fc', teacher='head.fc',
                    method=dict(type='LogitKD', tau=4.0), loss_weight=1.0)))
