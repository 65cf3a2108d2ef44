# KD with logit standardisation on CIFAR-100, resnet56 -> resnet20: both logits z-scored, base
# temperature 2, KD weight 9, CE weight 0.1 (sunshangquan/logit-standardization-KD: mdistiller's KD
# config with --logit-stand --base-temp 2 --kd-weight 9); 240 epochs, SGD lr 0.05, batch 64
# (configs/cifar100/README.md).
#   python tools/train.py configs/cifar100/resnet56_cifar100.py    # the teacher, first
_base_ = '../cifar100/_distill_resnet56_resnet20.py'

model = dict(
    student=dict(head=dict(loss=dict(loss_weight=0.1))),
    blocks=dict(
        logits=dict(student='head.fc', teacher='head.fc',
                    method=dict(type='LogitKD', tau=2.0, logit_standardization=True),
                    loss_weight=9.0)))
