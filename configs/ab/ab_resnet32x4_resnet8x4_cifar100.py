# AB on CIFAR-100, resnet32x4 -> resnet8x4: activation-boundary initialisation (margin 1, level
# weights 2 ** (i - L + 1), AB loss weight 1) for 30 epochs, then the cross-entropy alone
# (RepDistiller scripts/run_cifar_distill.sh: --distill abound -a 0 -b 1, --init_epochs 30); SGD lr
# 0.05, batch 64 (configs/cifar100/README.md). The student's cross-entropy stays on during the first
# stage (mmkd/methods/ab.py says what differs from the authors).
#   python tools/train.py configs/cifar100/resnet32x4_cifar100.py    # the teacher, first
_base_ = '../cifar100/_distill_resnet32x4_resnet8x4.py'

# Pre-ReLU maps: the bn2 output of each stage's last block (the block's residual sum before
# its in-place ReLU, the authors' `preact`, is not a module output here: see the README).
model = dict(blocks=dict(
    ab=dict(student=['backbone.layer1.0.bn2', 'backbone.layer2.0.bn2', 'backbone.layer3.0.bn2'],
            teacher=['backbone.layer1.4.bn2', 'backbone.layer2.4.bn2', 'backbone.layer3.4.bn2'],
            method=dict(type='AB', margin=1.0),
            loss_weight=dict(type='Step', value=1.0, milestones=[30], gamma=0.0,
                             by_epoch=True))))
# 30 epochs of the first stage, then the authors' 240 (RepDistiller's --init_epochs 30 before its
# 240-epoch run): the run is 270 epochs with the LR milestones moved by 30 (180, 210, 240).
train_cfg = dict(max_epochs=270)
param_scheduler = dict(type='MultiStepLR', by_epoch=True, milestones=[180, 210, 240], gamma=0.1)
