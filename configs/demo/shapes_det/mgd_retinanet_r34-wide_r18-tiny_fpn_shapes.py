# MGD on every FPN level, one generator each: the authors' detection setting (spatial mask,
# lambda 0.65, alpha 2e-5: yzd-v/MGD det/configs/distillers/mgd/
# retina_rx101_64x4d_distill_retina_r50_fpn_2x_coco.py). The 1x1 align conv sizes itself
# (64 -> 128 channels). Unlike the authors, the student's neck and head are not initialised
# from the teacher (their widths differ here).
_base_ = './_base_distill.py'

model = dict(
    blocks=dict(
        fpn=dict(student='neck', teacher='neck',
                 method=dict(type='MGD', preset='detection'), loss_weight=1.0)))
