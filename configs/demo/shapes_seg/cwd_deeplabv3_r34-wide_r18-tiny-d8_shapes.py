# Channel-wise distillation (Shu et al., ICCV 2021) on the segmentation logits: each class
# channel a distribution over the pixels, tau 1, weight 5 (MMRazor's PSPNet Cityscapes config).
_base_ = './_base_distill.py'

model = dict(
    blocks=dict(
        logits=dict(student='decode_head.conv_seg', teacher='decode_head.conv_seg',
                    method=dict(type='CWD', tau=1.0), loss_weight=5.0)))
