# FT's CIFAR-100 recipe, shared by configs/ft/ft_*_cifar100.py (each adds its pair's distiller
# base): factor transfer on the last stage's output (RepDistiller's feat[-2]); the paraphraser
# (rate 0.5, no BN) trained by reconstruction of the teacher's map for 30 epochs at lr 0.01
# (RepDistiller helper/pretrain.py: lr 0.01 for the CIFAR networks), then frozen; factor loss
# (p1 2, p2 1) weight 200 (the method's factor_weight; block weight 1), CE weight 1, no logit KD
# (RepDistiller scripts/run_cifar_distill.sh: --distill factor -a 0 -b 200, --init_epochs 30);
# SGD lr 0.05, batch 64 (configs/cifar100/README.md). The student's cross-entropy stays on
# during the first stage (mmkd/methods/ft.py says what differs from the authors).
# Not runnable alone: a pair config lists it after its distiller base and reads the ft_*
# values below as {{_base_.ft_*}} (two bases may not set the same key).
ft_model = dict(blocks=dict(
    ft=dict(student='backbone.layer3', teacher='backbone.layer3',
            method=dict(type='FT', paraphraser_stage=30, by_epoch=True, factor_weight=200.0,
                        reconstruction_weight=1.0, rate=0.5, p1=2.0, p2=1.0),
            loss_weight=1.0)))
# the paraphraser's lr: 0.01 = 0.05 x 0.2 (parameter names: methods.<block>.paraphraser.*)
ft_optim_wrapper = dict(paramwise_cfg=dict(
    custom_keys={'methods.ft.paraphraser': dict(lr_mult=0.2)}))
# the 270-epoch schedule of the 30-epoch first stage: ../cifar100/_base_init_stage_270e.py
# DDP: the translator (stage 1) and the paraphraser (stage 2) take no part in the loss
find_unused_parameters = True
