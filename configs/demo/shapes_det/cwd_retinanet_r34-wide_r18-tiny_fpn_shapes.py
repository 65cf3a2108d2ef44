# Channel-wise distillation (Shu et al., ICCV 2021) on every FPN level: tau 1, weight 10
# (MMRazor's COCO configs); a 1x1 conv aligns the student's 64 channels to the teacher's 128.
_base_ = './_base_distill.py'

model = dict(
    blocks=dict(
        fpn=dict(student='neck', teacher='neck', method=dict(type='CWD', tau=1.0),
                 loss_weight=10.0)))
