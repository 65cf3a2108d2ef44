# MGD (masked generative distillation) on the last backbone stage: the authors' classification
# setting (channel mask, lambda 0.15, alpha 7e-5: yzd-v/MGD cls/configs/distillers/mgd/
# res34_distill_res18_img.py), alpha kept per element as theirs, no logit KD (they use none).
_base_ = './_base_distill.py'

model = dict(
    blocks=dict(
        stage4=dict(student='backbone.layer4', teacher='backbone.layer4',
                    method=dict(type='MGD', preset='classification'), loss_weight=1.0)))
