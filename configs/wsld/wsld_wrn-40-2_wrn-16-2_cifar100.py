# WSLD on CIFAR-100, WRN-40-2 -> WRN-16-2: CE + 2.5 x WSLD on the logits at T 2 (the authors'
# knowledge_distiller.py: T 2, alpha 2.5, their only released recipe (ImageNet); the paper's
# CIFAR-100 settings were not read here); 240 epochs, SGD lr 0.05, batch 64
# (configs/cifar100/README.md).
#   python tools/train.py configs/cifar100/wrn-40-2_cifar100.py    # the teacher, first
_base_ = '../cifar100/_distill_wrn-40-2_wrn-16-2.py'

model = dict(blocks=dict(
    logits=dict(student='head.fc', teacher='head.fc',
                method=dict(type='WSLD', tau=2.0), loss_weight=2.5)))
