# DiffKD on ImageNet (paper's "B1" setting): ResNet-34 teacher (top-1 73.62 in mmpretrain;
# 73.31 in the paper) -> ResNet-18 student (69.90; paper: 69.76 -> DiffKD 72.22).
# 100 epochs, SGD lr 0.1, batch 256 (8 x 32), x0.1 at epochs 30/60/90, weight decay 1e-4: the
# base config's recipe, which is the authors' "B1" (diffkd_b1.yaml) except for the optimiser
# settings below.
# Two branches, all DiffKD term weights 1:
#   feat:   backbone output before pooling (N, 512, 7, 7), bottleneck denoiser, linear
#           autoencoder on the teacher with latent 1024, MSE;
#   logits: classifier outputs (N, 1000), MLP denoiser, KL at tau 1.
_base_ = 'mmpretrain::resnet/resnet18_8xb32_in1k.py'
custom_imports = dict(imports=['mmkd'], allow_failed_imports=False)

model = dict(
    _delete_=True,
    type='mmkd.Distiller',
    student={{_base_.model}},
    teacher=dict(
        config='mmpretrain::resnet/resnet34_8xb32_in1k.py',
        checkpoint='https://download.openmmlab.com/mmclassification/v0/resnet/'
                   'resnet34_8xb32_in1k_20210831-f257d4e6.pth'),
    blocks=dict(
        feat=dict(student='backbone', teacher='backbone',
                  method=dict(type='DiffKD', use_ae=True, ae_channels=1024, distance='mse'),
                  loss_weight=1.0),
        logits=dict(student='head.fc', teacher='head.fc',
                    method=dict(type='DiffKD', distance=dict(type='kl', tau=1.0)),
                    loss_weight=1.0)))

# The authors' trainer (hunto/image_classification_sota, lib/utils/optim.py): Nesterov momentum,
# and no weight decay on biases and other 1-D parameters (BN), the DiffKD modules' own included
# (they are attached to the student there and in the distiller's `methods` here).
optim_wrapper = dict(
    optimizer=dict(nesterov=True),
    paramwise_cfg=dict(norm_decay_mult=0., bias_decay_mult=0., flat_decay_mult=0.))
