# DiffKD with the paper's ImageNet layout at demo scale: a feature branch on the last backbone
# stage (bottleneck denoiser, linear autoencoder on the teacher, MSE) and a logit branch
# (MLP denoiser, KL at tau 1). ResNet-34 (quarter width) teacher -> ResNet-18 (1/16 width).
_base_ = './_base_distill.py'

model = dict(
    blocks=dict(
        feat=dict(student='backbone.layer4', teacher='backbone.layer4',
                  method=dict(type='DiffKD', use_ae=True), loss_weight=1.0),
        logits=dict(student='head.fc', teacher='head.fc',
                    method=dict(type='DiffKD', distance=dict(type='kl', tau=1.0)),
                    loss_weight=1.0)))
