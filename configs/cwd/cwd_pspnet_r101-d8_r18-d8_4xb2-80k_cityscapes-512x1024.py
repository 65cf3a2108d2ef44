# Channel-wise distillation on Cityscapes, MMRazor's setting (configs/distill/mmseg/cwd): PSPNet
# R-101-D8 teacher (mIoU 79.76) -> PSPNet R-18-D8 student (74.87), on the 19-class prediction maps
# (decode_head.conv_seg), tau 1, weight 5. MMRazor reports 75.54 (README there).
_base_ = 'mmseg::pspnet/pspnet_r18-d8_4xb2-80k_cityscapes-512x1024.py'
custom_imports = dict(imports=['mmkd'], allow_failed_imports=False)

model = dict(
    _delete_=True,
    type='mmkd.Distiller',
    student={{_base_.model}},
    teacher=dict(
        config='mmseg::pspnet/pspnet_r101-d8_4xb2-80k_cityscapes-512x1024.py',
        checkpoint='https://download.openmmlab.com/mmsegmentation/v0.5/pspnet/'
                   'pspnet_r101-d8_512x1024_80k_cityscapes/'
                   'pspnet_r101-d8_512x1024_80k_cityscapes_20200606_112211-e1e1100f.pth'),
    blocks=dict(
        logits=dict(student='decode_head.conv_seg', teacher='decode_head.conv_seg',
                    method=dict(type='CWD', tau=1.0), loss_weight=5.0)))
