# VID (Ahn et al., CVPR 2019): the four stages' outputs paired, one regressor (three 1x1 convs,
# C_s -> C_t) and a learned per-channel variance (initial 5.0) each, no logit KD, as the
# authors' CIFAR-100 setting (RepDistiller `--distill vid -a 0 -b 1`, mdistiller CFG.VID; their
# CIFAR nets have three stages, ours four), except the weight: 0.2, not their 1, chosen on the
# tune split (seed 0, top-1: weight 1 -> 63.3, 0.2 -> 63.7; student 61.1, teacher 90.4; two
# values only, CPU being scarce: the two differ by 1 of the 270 tune images, a weak choice):
#   python tools/benchmark/quality.py --tune --tasks classification --methods vid --seeds 0 \
#       --jobs 1 --threads 1 --teacher-work-dir work_dirs/h30_rkd_tune/teachers \
#       --variant w1 model.blocks.stages.loss_weight=1.0 --variant w0.2 ...=0.2
_base_ = './_base_distill.py'

stages = ['backbone.layer1', 'backbone.layer2', 'backbone.layer3', 'backbone.layer4']
model = dict(
    blocks=dict(
        stages=dict(student=stages, teacher=stages,
                    method=dict(type='VID', init_pred_var=5.0, eps=1e-5),
                    loss_weight=0.2)))
