# AB on CIFAR-100, resnet56 -> resnet20: activation-boundary initialisation (margin 1, level weights
# 2 ** (i - L + 1), AB loss weight 1) for 30 epochs, then the cross-entropy alone (RepDistiller
# scripts/run_cifar_distill.sh: --distill abound -a 0 -b 1, --init_epochs 30); SGD lr 0.05, batch 64
# (configs/cifar100/README.md). The student's cross-entropy stays on during the first stage
# (mmkd/methods/ab.py says what differs from the authors).
#   python tools/train.py configs/cifar100/resnet56_cifar100.py    # the teacher, first
_base_ = ['../cifar100/_distill_resnet56_resnet20.py', '../cifar100/_base_init_stage_270e.py']

# Pre-ReLU maps: the bn2 output of each stage's last block (the block's residual sum before
# its in-place ReLU, the authors' `preact`, is not a module output here: see the README).
model = dict(blocks=dict(
    ab=dict(student=['backbone.layer1.2.bn2', 'backbone.layer2.2.bn2', 'backbone.layer3.2.bn2'],
            teacher=['backbone.layer1.8.bn2', 'backbone.layer2.8.bn2', 'backbone.layer3.8.bn2'],
            method=dict(type='AB', margin=1.0),
            loss_weight={{_base_.init_stage_weight}})))
train_cfg = {{_base_.init_stage_train_cfg}}
param_scheduler = {{_base_.init_stage_param_scheduler}}
