# SRRL (Yang et al., ICLR 2021): the student's last feature map ('backbone': 32 channels), through
# a 1x1 conv + BN + ReLU connector to the teacher's 128, pooled and classified by the teacher's
# frozen 'head.fc'; the pooled features' MSE + the logits' MSE, both weight 1 (the authors'
# code); block weight 1, chosen on the tune split (seed 0, top-1: weight 0.2 -> 84.4,
# 1 -> 85.6, 5 -> 81.1; student 61.1, teacher 90.4):
#   python tools/benchmark/quality.py --tune --tasks classification --methods srrl --seeds 0 \
#       --variant w0.2 model.blocks.srrl.loss_weight=0.2 --variant w5 ...=5.0 (w1 alike)
_base_ = './_base_distill.py'

model = dict(
    blocks=dict(
        srrl=dict(student='backbone', teacher='backbone',
                 method=dict(type='SRRL', classifier='head.fc', feat_weight=1.0, sr_weight=1.0),
                 loss_weight=1.0)))
