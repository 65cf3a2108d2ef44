# RKD (Park et al., CVPR 2019): distance- (25) and angle-wise (50) relations of the batch's pooled
# features ('neck': the student's 128 and the teacher's 256 channels; no connector), no logit
# KD, as mdistiller's CIFAR-100 setting, except the block weight: 0.2, not their 1, chosen on
# the tune split (seed 0, top-1: weight 5 -> 81.1, 1 -> 85.6, 0.2 -> 87.4, 0.04 -> 80.0 (the
# metric-learning 1 / 2 of the paper); student 61.1, teacher 90.4):
#   python tools/benchmark/quality.py --tune --tasks classification --methods rkd --seeds 0 \
#       --variant w1 model.blocks.feat.loss_weight=1.0 --variant w5 ...=5.0 (w0.2, w0.04 alike)
_base_ = './_base_distill.py'

model = dict(
    blocks=dict(
        feat=dict(student='neck', teacher='neck',
                  method=dict(type='RKD', distance_weight=25.0, angle_weight=50.0),
                  loss_weight=0.2)))
