# DKD on CIFAR-100, wrn-40-2 -> wrn-16-2: CE + DKD on the logits, alpha 1, beta 6, T 4 (mdistiller
# configs/cifar100/dkd/: beta 6 for this teacher), the whole DKD loss warmed up linearly over 20
# epochs; 240 epochs, SGD lr 0.05, batch 64 (configs/cifar100/README.md).
#   python tools/train.py configs/cifar100/wrn-40-2_cifar100.py    # the teacher, first
_base_ = '../cifar100/_distill_wrn-40-2_wrn-16-2.py'

model = dict(blocks=dict(
    logits=dict(student='head.fc', teacher='head.fc',
                method=dict(type='DKD', alpha=1.0, beta=6, tau=4.0),
                loss_weight=dict(type='LinearWarmup', value=1.0, warmup=20, by_epoch=True))))
