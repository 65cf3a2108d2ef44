# SRRL on CIFAR-100, ResNet-56 -> ResNet-20:
# CE + the pooled features' MSE + the MSE of the logits of the
# student's connected feature through the teacher's frozen head.fc, both weight 1 (the authors'
# code, jingyang2017/KD_SRRL; the paper's CIFAR-100 weights were not read here); the last
# stage's map ('backbone') through a 1x1 conv + BN + ReLU connector; 240 epochs, SGD lr 0.05,
# batch 64 (configs/cifar100/README.md).
#   python tools/train.py configs/cifar100/resnet56_cifar100.py    # the teacher, first
_base_ = '../cifar100/_distill_resnet56_resnet20.py'

model = dict(blocks=dict(
    srrl=dict(student='backbone', teacher='backbone',
             method=dict(type='SRRL', classifier='head.fc', feat_weight=1.0, sr_weight=1.0),
             loss_weight=1.0)))
