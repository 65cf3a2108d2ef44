# WSLD on CIFAR-100, ResNet-32x4 -> ResNet-8x4: CE + 2.5 x WSLD on the logits at T 2 (the authors'
# knowledge_distiller.py: T 2, alpha 2.5, their only released recipe (ImageNet); the paper's
# CIFAR-100 settings were not read here); 240 epochs, SGD lr 0.05, batch 64
# (configs/cifar100/README.md).
#   python tools/train.py configs/cifar100/resnet32x4_cifar100.py    # the teacher, first
_base_ = '../cifar100/_distill_resnet32x4_resnet8x4.py'

model = dict(blocks=dict(
    logits=dict(student='head.fc', teacher='head.fc',
                method=dict(type='WSLD', tau=2.0), loss_weight=2.5)))
