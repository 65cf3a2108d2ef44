# VkD on Cityscapes: DeepLabV3 R-101-D8 teacher -> DeepLabV3 R-18-D8 student, on the last
# backbone stage (student 512 -> teacher 2048 channels, 64x128 positions at 512x1024 crops).
# Dense setting: orthogonal projector, per-channel standardisation of student and teacher over
# all positions of the batch, smooth L1, weight 1 (the paper reports no segmentation run).
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
        c5=dict(student='backbone.layer4', teacher='backbone.layer4',
                method=dict(type='VkD', normalize='batch'), loss_weight=1.0)))
