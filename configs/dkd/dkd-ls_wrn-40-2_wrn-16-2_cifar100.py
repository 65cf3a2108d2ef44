# DKD with logit standardisation on CIFAR-100, wrn-40-2 -> wrn-16-2, as the run behind the
# logit-standardisation authors' published 76.39: their log `logs/DKD/dkd,wrn_40_2,wrn_16_2,2,12,2.0.txt`
# (sunshangquan/logit-standardization-KD f6e5aa5; the name is KD type, teacher, student,
# --base-temp, --kd-weight, DKD BETA) = --logit-stand --base-temp 2 --kd-weight 12 with BETA 2 (not
# the 6 of their wrn_40_2_wrn_16_2.yaml; their tools/train.py multiplies ALPHA 1 and BETA by
# --kd-weight): alpha 12, beta 24, T 2, z-scored logits, mdistiller's 20-epoch warm-up; 240 epochs,
# SGD lr 0.05, batch 64 (configs/cifar100/README.md).
#   python tools/train.py configs/cifar100/wrn-40-2_cifar100.py    # the teacher, first
_base_ = '../cifar100/_distill_wrn-40-2_wrn-16-2.py'

model = dict(blocks=dict(
    logits=dict(student='head.fc', teacher='head.fc',
                method=dict(type='DKD', alpha=12.0, beta=24.0, tau=2.0,
                            logit_standardization=True),
                loss_weight=dict(type='LinearWarmup', value=1.0, warmup=20, by_epoch=True))))
