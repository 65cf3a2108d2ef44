# NST on CIFAR-100, resnet56 -> resnet20: the outputs of the three stages paired, squared MMD with
# the polynomial kernel (d 2, c 0) between the spatially normalised channels, weight 50, CE weight
# 1, no logit KD (RepDistiller scripts/run_cifar_distill.sh `--distill nst -a 0 -b 50`;
# mdistiller configs/cifar100/nst.yaml + CFG.NST); 240 epochs, SGD lr 0.05,
# batch 64 (configs/cifar100/README.md).
#   python tools/train.py configs/cifar100/resnet56_cifar100.py    # the teacher, first
_base_ = '../cifar100/_distill_resnet56_resnet20.py'

stages = ['backbone.layer1', 'backbone.layer2', 'backbone.layer3']
model = dict(blocks=dict(
    stages=dict(student=stages, teacher=stages, method=dict(type='NST'),
                loss_weight=50.0)))
