# VID on CIFAR-100, resnet32x4 -> resnet8x4: the outputs of the three stages paired, one regressor
# (three 1x1 convolutions) and a learned per-channel variance (initial 5.0) each, weight 1,
# CE weight 1, no logit KD (RepDistiller scripts/run_cifar_distill.sh `--distill vid -a 0 -b 1`;
# mdistiller configs/cifar100/vid.yaml + CFG.VID); 240 epochs, SGD lr 0.05,
# batch 64 (configs/cifar100/README.md).
#   python tools/train.py configs/cifar100/resnet32x4_cifar100.py    # the teacher, first
_base_ = '../cifar100/_distill_resnet32x4_resnet8x4.py'

stages = ['backbone.layer1', 'backbone.layer2', 'backbone.layer3']
model = dict(blocks=dict(
    stages=dict(student=stages, teacher=stages,
                method=dict(type='VID', init_pred_var=5.0, eps=1e-5),
                loss_weight=1.0)))
