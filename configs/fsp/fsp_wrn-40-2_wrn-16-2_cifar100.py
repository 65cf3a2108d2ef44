# FSP on CIFAR-100, wrn-40-2 -> wrn-16-2: the Gram matrices between the stem output and the three
# stage outputs (RepDistiller's feat[:-1], three pairs; equal channels on both sides),
# (WRN: the raw output of the last stage, before the final BN + ReLU, as RepDistiller's wrn.py
# returns f3 without preact),
# as RepDistiller's two stages (train_student.py, helper/pretrain.py): 30 epochs with the FSP
# loss (weight 1), then 240 epochs of cross-entropy, no logit KD. Here the FSP block is a Step
# schedule, on in epochs 1..30 and off after, in a run of 270 epochs whose learning-rate
# milestones move by 30 (180, 210, 240: RepDistiller's 150, 180, 210 of its second stage). The
# cross-entropy stays on during the FSP stage (mmkd/methods/fsp.py lists the differences).
#   python tools/train.py configs/cifar100/wrn-40-2_cifar100.py    # the teacher, first
_base_ = ['../cifar100/_distill_wrn-40-2_wrn-16-2.py', './_base_fsp_cifar100.py',
          '../cifar100/_base_init_stage_270e.py']

model = {{_base_.fsp_model}}
train_cfg = {{_base_.init_stage_train_cfg}}
param_scheduler = {{_base_.init_stage_param_scheduler}}
