# KDSVD on CIFAR-100, wrn-40-2 -> wrn-16-2: the outputs of the three stages, the RBF relations of
# consecutive stages' leading right singular vectors (k 1), weight 1, CE weight 1, no logit KD
# (mdistiller configs/cifar100/kdsvd.yaml + CFG.KDSVD; RepDistiller has no KDSVD script line).
# Equal channels per stage on this pair: no connector; 240 epochs, SGD lr 0.05,
# batch 64 (configs/cifar100/README.md).
#   python tools/train.py configs/cifar100/wrn-40-2_cifar100.py    # the teacher, first
_base_ = '../cifar100/_distill_wrn-40-2_wrn-16-2.py'

stages = ['backbone.layer1', 'backbone.layer2', 'backbone.layer3']
model = dict(blocks=dict(
    stages=dict(student=stages, teacher=stages, method=dict(type='KDSVD', k=1),
                loss_weight=1.0)))
