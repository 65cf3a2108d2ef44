# DKD on CIFAR-100, resnet32x4 -> resnet8x4: CE + DKD on the logits, alpha 1, beta 8, T 4
# (mdistiller configs/cifar100/dkd/: beta 8 for this teacher), the whole DKD loss warmed up linearly
# over 20 epochs; 240 epochs, SGD lr 0.05, batch 64 (configs/cifar100/README.md).
#   python tools/train.py configs/cifar100/resnet32x4_cifar100.py    # the teacher, first
_base_ = '../cifar100/_distill_resnet32x4_resnet8x4.py'

model = dict(blocks=dict(
    logits=dict(student='head.fc', teacher='head.fc',
                method=dict(type='DKD', alpha=1.0, beta=8, tau=4.0),
                loss_weight=dict(type='LinearWarmup', value=1.0, warmup=20, by_epoch=True))))
