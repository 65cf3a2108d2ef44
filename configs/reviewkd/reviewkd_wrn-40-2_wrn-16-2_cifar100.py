# ReviewKD on CIFAR-100, wrn-40-2 -> wrn-16-2: ABF fusion of the student's stage outputs
# layer1..layer3 (pre-activation WRN: the raw residual sums, mdistiller's `feats`) and pooled
# feature (middle width min(512, 128) = 128), HCL against the teacher's pre-activation features
# as mdistiller's `preact_feats[1:]`: bn1 of the first block of layer2 and layer3 (BN, before
# the ReLU: exact) and the final BN (`final_norm`; its ReLU is in place, so this point is
# after the ReLU, the one difference), then the pooled feature. Loss weight 5 warmed up as
# min(epoch / 20, 1), CE weight 1, no logit KD (the authors' CIFAR-100/script/reviewKD.sh
# `--kd-loss-weight 5.0`, `--kd-warm-up 20`); 240 epochs, SGD lr 0.05, batch 64
# (configs/cifar100/README.md).
#   python tools/train.py configs/cifar100/wrn-40-2_cifar100.py    # the teacher, first
_base_ = '../cifar100/_distill_wrn-40-2_wrn-16-2.py'

model = dict(blocks=dict(
    review=dict(student=('backbone.layer1', 'backbone.layer2', 'backbone.layer3', 'neck'),
                teacher=('backbone.layer2.0.bn1', 'backbone.layer3.0.bn1',
                         'backbone.final_norm', 'neck'),
                method=dict(type='ReviewKD'),
                loss_weight=dict(type='LinearWarmup', value=5.0, warmup=20, by_epoch=True))))
