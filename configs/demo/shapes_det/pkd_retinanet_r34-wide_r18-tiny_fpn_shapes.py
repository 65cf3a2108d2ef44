# PKD (Cao et al., NeurIPS 2022) on the FPN levels: per-channel standardised maps, MSE / 2,
# weight 10 (MMRazor's RetinaNet config; it uses FPN levels 0-3 of 5, this FPN has 3); a 1x1
# conv aligns the student's 64 channels to the teacher's 128.
_base_ = './_base_distill.py'

model = dict(
    blocks=dict(
        fpn=dict(student='neck', teacher='neck', method=dict(type='PKD'), loss_weight=10.0)))
