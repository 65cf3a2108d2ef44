# DiffKD on Cityscapes (512x1024 crops, 80k iterations): DeepLabV3 R-101-D8 teacher -> DeepLabV3
# R-18-D8 student (paper: teacher 78.07, student 74.21 -> DiffKD 77.78 mIoU).
# Paper setting: the 19-class prediction maps, no autoencoder, DIST distance (beta = gamma = 1),
# SGD momentum 0.9 with poly decay (the base config's) at lr 0.02.
_base_ = 'mmseg::deeplabv3/deeplabv3_r18-d8_4xb2-80k_cityscapes-512x1024.py'
custom_imports = dict(imports=['mmkd'], allow_failed_imports=False)

model = dict(
    _delete_=True,
    type='mmkd.SingleTeacherDistiller',
    student={{_base_.model}},
    teacher=dict(
        config='mmseg::deeplabv3/deeplabv3_r101-d8_4xb2-80k_cityscapes-512x1024.py',
        checkpoint='https://download.openmmlab.com/mmsegmentation/v0.5/deeplabv3/'
                   'deeplabv3_r101-d8_512x1024_80k_cityscapes/'
                   'deeplabv3_r101-d8_512x1024_80k_cityscapes_20200606_113503-9e428899.pth'),
    blocks=dict(
        logits=dict(student='decode_head.conv_seg', teacher='decode_head.conv_seg',
                    method=dict(type='DiffKD', distance=dict(type='dist', beta=1.0, gamma=1.0),
                                use_ae=False),
                    loss_weight=1.0)))
optim_wrapper = dict(optimizer=dict(lr=0.02))
