# DiffKD on the prediction maps (4 classes, 1/8 resolution) with the DIST distance, no
# autoencoder, as in the paper's Cityscapes setting.
_base_ = './_base_distill.py'

model = dict(
    blocks=dict(
        logits=dict(student='decode_head.conv_seg', teacher='decode_head.conv_seg',
                    method=dict(type='DiffKD', distance=dict(type='dist', beta=1.0, gamma=1.0)),
                    loss_weight=1.0)))
