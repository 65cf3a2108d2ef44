# AFD on CIFAR-100: resnet110 teacher -> resnet32 student. Everything as in
# afd_resnet110_resnet20_cifar100.py (teacher: every second of its 54 blocks, 27 features;
# loss CE + 0.9 * KD (T = 4) + 200 * AFD; 240 epochs, SGD lr 0.05, batch 64) except the
# student, configs/cifar100/resnet32_cifar100.py, which gives all 15 of its blocks (the
# authors' LAYER has no resnet32 entry: every block, as for their resnet20/56 students).
_base_ = './afd_resnet110_resnet20_cifar100.py'

model = dict(student=dict(backbone=dict(depth=32)))
