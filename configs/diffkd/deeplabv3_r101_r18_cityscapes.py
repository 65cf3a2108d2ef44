# DiffKD on Cityscapes: DeepLabV3 R-101-D8 teacher -> DeepLabV3 R-18-D8 student (paper: teacher
# 78.07, student 74.21 -> DiffKD 77.78 mIoU).
# Paper setting: the 19-class prediction maps, no autoencoder, DIST distance (beta = gamma = 1);
# SGD momentum 0.9, lr 0.02, poly decay, 512x1024 crops, random scale 0.5-2, flip.
# The paper's teacher and student numbers are CIRKD's (Yang et al., CVPR 2022), and so is the
# rest of the schedule here, from CIRKD's code (winycg/CIRKD, first release, train_kd.py):
# batch 16 (run on 8 GPUs x 2 images), 40k iterations, weight decay 1e-4, poly power 0.9 to 0.
_base_ = 'mmseg::deeplabv3/deeplabv3_r18-d8_4xb2-80k_cityscapes-512x1024.py'
custom_imports = dict(imports=['mmkd'], allow_failed_imports=False)

model = dict(
    _delete_=True,
    type='mmkd.Distiller',
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

optim_wrapper = dict(optimizer=dict(lr=0.02, weight_decay=1e-4))
param_scheduler = [
    dict(type='PolyLR', eta_min=0., power=0.9, begin=0, end=40000, by_epoch=False)]
train_cfg = dict(max_iters=40000, val_interval=4000)
default_hooks = dict(checkpoint=dict(interval=4000))
# lr 0.02 is for 16 images per step: with fewer GPUs pass
# --cfg-options auto_scale_lr.enable=True to scale it linearly.
auto_scale_lr = dict(enable=False, base_batch_size=16)
