# DKD with logit standardisation on CIFAR-100, resnet56 -> resnet20: the logit-standardisation
# authors' --logit-stand --base-temp 2 --kd-weight 9 on mdistiller's DKD config: alpha 1 x 9, beta 2
# x 9, T 2, z-scored logits, the same 20-epoch warm-up; 240 epochs, SGD lr 0.05, batch 64
# (configs/cifar100/README.md).
#   python tools/train.py configs/cifar100/resnet56_cifar100.py    # the teacher, first
_base_ = '../cifar100/_distill_resnet56_resnet20.py'

model = dict(blocks=dict(
    logits=dict(student='head.fc', teacher='head.fc',
                method=dict(type='DKD', alpha=9.0, beta=18, tau=2.0,
                            logit_standardization=True),
                loss_weight=dict(type='LinearWarmup', value=1.0, warmup=20, by_epoch=True))))
