# RLD on CIFAR-100, resnet32x4 -> resnet8x4: CE + refined logit distillation, alpha 1, beta 8, T 4
# for both parts (the authors' zju-SWJ/RLD defaults for every CIFAR pair, trained with their
# README's --same-t), warmed up over 20 epochs; 240 epochs, SGD lr 0.05, batch 64
# (configs/cifar100/README.md).
#   python tools/train.py configs/cifar100/resnet32x4_cifar100.py    # the teacher, first
_base_ = '../cifar100/_distill_resnet32x4_resnet8x4.py'

model = dict(blocks=dict(
    logits=dict(student='head.fc', teacher='head.fc',
                method=dict(type='RLD', alpha=1.0, beta=8.0, tau=4.0),
                loss_weight=dict(type='LinearWarmup', value=1.0, warmup=20, by_epoch=True))))
