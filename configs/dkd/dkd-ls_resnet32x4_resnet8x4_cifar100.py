# DKD with logit standardisation on CIFAR-100, resnet32x4 -> resnet8x4: the logit-standardisation
# authors' --logit-stand --base-temp 2 --kd-weight 9 on mdistiller's DKD config: alpha 1 x 9, beta 8
# x 9, T 2, z-scored logits, the same 20-epoch warm-up; 240 epochs, SGD lr 0.05, batch 64
# (configs/cifar100/README.md).
#   python tools/train.py configs/cifar100/resnet32x4_cifar100.py    # the teacher, first
_base_ = '../cifar100/_distill_resnet32x4_resnet8x4.py'

model = dict(blocks=dict(
    logits=dict(student='head.fc', teacher='head.fc',
                method=dict(type='DKD', alpha=9.0, beta=72, tau=2.0,
                            logit_standardization=True),
                loss_weight=dict(type='LinearWarmup', value=1.0, warmup=20, by_epoch=True))))
