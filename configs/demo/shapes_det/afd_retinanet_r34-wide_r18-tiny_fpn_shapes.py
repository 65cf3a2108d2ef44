# AFD over the four backbone stages of each detector (candidates linked by attention).
# Weight 50: the AFD authors' CIFAR 200 scaled by the stage maps' ~4x fewer positions. On the
# tune split no AFD weight gained: 50 / 15 / 5 gave 19.0 / 17.7 / 18.8 mAP against the
# baseline's 27.1, so 50 (the best, by less than seed noise) stays (docs/benchmarks.md,
# "Dense-task regressions").
_base_ = './_base_distill.py'

model = dict(
    blocks=dict(
        stages=dict(student='backbone.layer*', teacher='backbone.layer*',
                    method=dict(type='AFD'), loss_weight=50.0)))
