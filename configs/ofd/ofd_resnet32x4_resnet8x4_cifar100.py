# OFD on CIFAR-100, resnet32x4 -> resnet8x4: the partial L2 between the connected student and the
# teacher's pre-ReLU features at the end of each of the 3 stages, margins from the teacher's
# last-block bn2 of each stage (mdistiller get_bn_before_relu), level weights 1/4, 1/2, 1, loss
# weight 1e-3 (the authors' / batch / 1000; mdistiller CFG.OFD.LOSS.FEAT_WEIGHT), CE weight 1,
# no logit KD (mdistiller configs/cifar100/ofd.yaml); 240 epochs, SGD lr 0.05, batch 64
# (configs/cifar100/README.md).
# Difference: the authors' ResNet feature is the block's residual sum bn2(.) + identity before
# the ReLU; CifarResNet gives no hook on that sum, so the bn2 output (before the residual add;
# the tensor whose N(beta, gamma^2) the margin describes) is distilled (mmkd/methods/ofd.py).
#   python tools/train.py configs/cifar100/resnet32x4_cifar100.py    # the teacher, first
_base_ = '../cifar100/_distill_resnet32x4_resnet8x4.py'

_student = ['backbone.layer1.0.bn2', 'backbone.layer2.0.bn2', 'backbone.layer3.0.bn2']
_teacher = ['backbone.layer1.4.bn2', 'backbone.layer2.4.bn2', 'backbone.layer3.4.bn2']
model = dict(blocks=dict(
    feat=dict(student=_student, teacher=_teacher,
              method=dict(type='OFD', teacher_bns=_teacher),
              loss_weight=1e-3)))
