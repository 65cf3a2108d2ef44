# SP on CIFAR-100, wrn-40-2 -> wrn-16-2: the row-normalised batch similarity matrices of
# the last stage's output (backbone.layer3: mdistiller feats[-1], RepDistiller feat[-2])
# matched, weight 3000, CE weight 1, no logit KD (mdistiller configs/cifar100/sp.yaml + CFG.SP;
# RepDistiller scripts/run_cifar_distill.sh: -a 0 -b 3000); 240 epochs, SGD lr 0.05, batch 64
# (configs/cifar100/README.md).
#   python tools/train.py configs/cifar100/wrn-40-2_cifar100.py    # the teacher, first
_base_ = '../cifar100/_distill_wrn-40-2_wrn-16-2.py'

model = dict(blocks=dict(
    last_stage=dict(student='backbone.layer3', teacher='backbone.layer3',
                    method=dict(type='SP'), loss_weight=3000.0)))
