# AFD over the four backbone stages of each detector (candidates linked by attention).
# Weight 50: the AFD authors' CIFAR 200 scaled by the stage maps' ~4x fewer positions
# (16x16 at most here vs 32x32 on CIFAR; the loss averages over positions).
_base_ = './_base_distill.py'

model = dict(
    blocks=dict(
        stages=dict(student='backbone.layer*', teacher='backbone.layer*',
                    method=dict(type='AFD'), loss_weight=50.0)))
