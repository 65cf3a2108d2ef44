# OFD on CIFAR-100, resnet56 -> resnet20: as ./ofd_resnet32x4_resnet8x4_cifar100.py (pre-ReLU
# bn2 outputs of each stage's last block, margins from the teacher's, level weights 1/4, 1/2,
# 1, loss weight 1e-3, CE 1, no logit KD: mdistiller's setting); 240 epochs, SGD lr 0.05,
# batch 64 (configs/cifar100/README.md). Same difference from the authors' residual-sum
# feature as there.
#   python tools/train.py configs/cifar100/resnet56_cifar100.py    # the teacher, first
_base_ = '../cifar100/_distill_resnet56_resnet20.py'

_student = ['backbone.layer1.2.bn2', 'backbone.layer2.2.bn2', 'backbone.layer3.2.bn2']
_teacher = ['backbone.layer1.8.bn2', 'backbone.layer2.8.bn2', 'backbone.layer3.8.bn2']
model = dict(blocks=dict(
    feat=dict(student=_student, teacher=_teacher,
              method=dict(type='OFD', teacher_bns=_teacher),
              loss_weight=1e-3)))
