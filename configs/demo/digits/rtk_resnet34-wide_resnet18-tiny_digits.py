# RTK with every residual block as a candidate (student 8 blocks, teacher 16):
# every student block attends over the teacher blocks and keeps the top half (8 of 16) as
# representative keys.
# CE + 0.9 * KD (T = 4) + 50 * RTK: the AFD authors' CIFAR weights, with 200 scaled by the
# demo maps' 4x fewer positions (16x16 input vs 32x32; the loss averages over positions).
_base_ = './_base_distill.py'

model = dict(
    blocks=dict(
        blocks=dict(student='backbone.layer*.*', teacher='backbone.layer*.*',
                    method=dict(type='RTK', selection='topk'), loss_weight=50.0),
        logits=dict(student='head.fc', teacher='head.fc',
                    method=dict(type='LogitKD', tau=4.0), loss_weight=0.9)))
