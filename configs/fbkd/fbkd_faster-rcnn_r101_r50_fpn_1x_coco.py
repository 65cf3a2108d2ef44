# FBKD on COCO, MMRazor's setting (configs/distill/mmdet/fbkd/
# fbkd_fpn_faster-rcnn_r101_faster-rcnn_r50_1x_coco.py): Faster R-CNN R-101 FPN 1x teacher
# (box AP 39.4) -> Faster R-CNN R-50 FPN 1x student (37.4), FPN levels 0-3 (MMRazor records
# neck.fpn_convs.0-3.conv, the same tensors), FBKD's defaults = MMRazor's loss and connector
# settings (term weights 7e-5 / 4e-3 / 4e-3 / 7e-5, temperatures 0.5, dot-product non-local
# blocks, reduction 4, 4, 2, 2 and max-pool stride 8, 4, 2, 2 on levels 0-3). MMRazor reports
# 39.3 box AP (README there).
_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['mmkd'], allow_failed_imports=False)

levels = ['neck[0]', 'neck[1]', 'neck[2]', 'neck[3]']
model = dict(
    _delete_=True,
    type='mmkd.Distiller',
    student={{_base_.model}},
    teacher=dict(
        config='mmdet::faster_rcnn/faster-rcnn_r101_fpn_1x_coco.py',
        checkpoint='https://download.openmmlab.com/mmdetection/v2.0/faster_rcnn/'
                   'faster_rcnn_r101_fpn_1x_coco/'
                   'faster_rcnn_r101_fpn_1x_coco_20200130-f513f705.pth'),
    blocks=dict(
        fpn=dict(student=levels, teacher=levels, method=dict(type='FBKD'), loss_weight=1.0)))
