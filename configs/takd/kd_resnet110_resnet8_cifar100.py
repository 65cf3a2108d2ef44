# The chain's reference (the paper's BLKD column): resnet110 -> resnet8 directly, stage 2's
# student, loss and recipe (CE x 0.1 + KD x 0.9 at T = 4, 240 epochs, SGD lr 0.05, batch 64) with
# the chain's top teacher. Compare its resnet8 with ./takd_resnet20_resnet8_cifar100.py's.
#   python tools/train.py configs/cifar100/resnet110_cifar100.py    # the teacher, first
#   python tools/train.py configs/takd/kd_resnet110_resnet8_cifar100.py
_base_ = './takd_resnet20_resnet8_cifar100.py'

model = dict(
    teacher=dict(_delete_=True, config='{{ fileDirname }}/../cifar100/resnet110_cifar100.py',
                 checkpoint='work_dirs/resnet110_cifar100/epoch_240.pth'))
