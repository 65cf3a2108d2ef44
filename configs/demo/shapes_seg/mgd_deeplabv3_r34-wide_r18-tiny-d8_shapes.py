# MGD on the last backbone stage: the authors' segmentation setting (spatial mask, lambda 0.75,
# alpha 2e-5: yzd-v/MGD seg/configs/distillers/mgd/psp_r101_distill_psp_r18_40k_512x512_city.py;
# their logit term, CWD at tau 4 with weight 3, is left out until CWD lands).
_base_ = './_base_distill.py'

model = dict(
    blocks=dict(
        c5=dict(student='backbone.layer4', teacher='backbone.layer4',
                method=dict(type='MGD', preset='segmentation'), loss_weight=1.0)))
