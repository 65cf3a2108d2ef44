# NST (Huang & Wang, 2017): the four stages' outputs paired, squared MMD (polynomial kernel) of
# the spatially normalised channels, no logit KD, as the authors' CIFAR-100 setting (RepDistiller
# `--distill nst -a 0 -b 50`, mdistiller CFG.NST; their CIFAR nets have three stages, ours four),
# except the weight: 10, not their 50, chosen on the tune split (seed 0, top-1: weight 50 ->
# 65.9, 10 -> 82.2; student 61.1, teacher 90.4; two values only, CPU being scarce: a weight
# below 10 was not tried):
#   python tools/benchmark/quality.py --tune --tasks classification --methods nst --seeds 0 \
#       --jobs 1 --threads 1 --teacher-work-dir work_dirs/h30_rkd_tune/teachers \
#       --variant w50 model.blocks.stages.loss_weight=50.0 --variant w10 ...=10.0
_base_ = './_base_distill.py'

stages = ['backbone.layer1', 'backbone.layer2', 'backbone.layer3', 'backbone.layer4']
model = dict(
    blocks=dict(
        stages=dict(student=stages, teacher=stages, method=dict(type='NST'),
                    loss_weight=10.0)))
