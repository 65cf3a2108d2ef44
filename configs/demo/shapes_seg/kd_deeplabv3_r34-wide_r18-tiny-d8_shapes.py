# Pixel-wise logit KD on the segmentation prediction map (tau 1).
_base_ = './_base_distill.py'

model = dict(
    blocks=dict(
        logits=dict(student='decode_head.conv_seg', teacher='decode_head.conv_seg',
                    method=dict(type='LogitKD', tau=1.0), loss_weight=1.0)))
