# AB on CIFAR-100, wrn-40-2 -> wrn-16-2: activation-boundary initialisation (margin 1, level weights
# 2 ** (i - L + 1), AB loss weight 1) for 30 epochs, then the cross-entropy alone (RepDistiller
# scripts/run_cifar_distill.sh: --distill abound -a 0 -b 1, --init_epochs 30); SGD lr 0.05, batch 64
# (configs/cifar100/README.md). The student's cross-entropy stays on during the first stage
# (mmkd/methods/ab.py says what differs from the authors).
#   python tools/train.py configs/cifar100/wrn-40-2_cifar100.py    # the teacher, first
_base_ = ['../cifar100/_distill_wrn-40-2_wrn-16-2.py', '../cifar100/_base_init_stage_270e.py']

# Pre-ReLU maps: the authors' preact features f1, f2 of a WRN are the next stage's first bn1
# output (exact); f3, the final BN's output, is overwritten by its in-place ReLU and cannot be
# recorded, so the two levels keep the authors' weights of a 3-level loss (0.25, 0.5): README.
model = dict(blocks=dict(
    ab=dict(student=['backbone.layer2.0.bn1', 'backbone.layer3.0.bn1'],
            teacher=['backbone.layer2.0.bn1', 'backbone.layer3.0.bn1'],
            method=dict(type='AB', margin=1.0, level_weights=[0.25, 0.5]),
            loss_weight={{_base_.init_stage_weight}})))
train_cfg = {{_base_.init_stage_train_cfg}}
param_scheduler = {{_base_.init_stage_param_scheduler}}
