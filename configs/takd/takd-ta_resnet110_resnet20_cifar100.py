# TAKD (Mirzadeh et al., AAAI 2020) on CIFAR-100, stage 1 of 2: resnet110 teacher -> resnet20
# teacher assistant, the ResNet chain of the paper's Table 1 and of the authors' README example
# 3.2 (resnet110 -> resnet20 -> resnet8). Logit KD only, as the authors; the weights are this
# repository's CIFAR KD recipe, CE x 0.1 + KD x 0.9 at T = 4 (the authors' (1 - lambda) CE +
# lambda T^2 KL with lambda 0.9, the KL averaged over samples; they searched lambda and T per run
# with NNI and published no chosen value: README.md), 240 epochs, SGD lr 0.05, batch 64
# (../cifar100/README.md). The chain, in order (README.md):
#   python tools/train.py configs/cifar100/resnet110_cifar100.py                 # the teacher
#   python tools/train.py configs/takd/takd-ta_resnet110_resnet20_cifar100.py    # this stage
#   python tools/model_converters/extract_student.py \
#       work_dirs/takd-ta_resnet110_resnet20_cifar100/epoch_240.pth \
#       work_dirs/takd-ta_resnet110_resnet20_cifar100/ta_exported.pth
#   python tools/train.py configs/takd/takd_resnet20_resnet8_cifar100.py         # stage 2
# The student and recipe are the resnet20 pair file's (../cifar100/resnet20_cifar100.py); only
# the teacher (resnet110 for resnet56) and the loss weights change.
_base_ = '../cifar100/_distill_resnet56_resnet20.py'

model = dict(
    student=dict(head=dict(loss=dict(loss_weight=0.1))),  # CE x (1 - lambda)
    teacher=dict(_delete_=True, config='{{ fileDirname }}/../cifar100/resnet110_cifar100.py',
                 checkpoint='work_dirs/resnet110_cifar100/epoch_240.pth'),
    blocks=dict(
        logits=dict(student='head.fc', teacher='head.fc',
                    method=dict(type='LogitKD', tau=4.0), loss_weight=0.9)))  # lambda
