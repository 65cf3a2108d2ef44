# RTK over the four backbone stages of each detector (candidates linked by attention).
# On the tune split no RTK setting gained: weights 50 / 15 / 5 / 1.5 gave 20.1 / 20.4 / 22.8 /
# 27.0 mAP against the baseline's 27.1, and the FPN outputs as candidates 26.4 (weight 5).
# 1.5 is the least harmful weight tried (docs/benchmarks.md, "Dense-task regressions").
_base_ = './_base_distill.py'

model = dict(
    blocks=dict(
        stages=dict(student='backbone.layer*', teacher='backbone.layer*',
                    method=dict(type='RTK', selection='topk'), loss_weight=1.5)))
