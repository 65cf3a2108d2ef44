# AFD on Cityscapes: DeepLabV3 R-101-D8 teacher -> DeepLabV3 R-18-D8 student; the four backbone
# stages of each network are the candidates (AFD reports no segmentation results; the authors'
# CIFAR weight 200 is kept).
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
        stages=dict(student='backbone.layer*', teacher='backbone.layer*',
                    method=dict(type='AFD'), loss_weight=200.0)))
