# FGD on COCO, the authors' two-stage pair (yzd-v/FGD configs/distillers/fgd/
# fgd_cascade_mask_rcnn_rx101_32x4d_distill_faster_rcnn_r50_fpn_2x_coco.py): Cascade Mask R-CNN
# X-101-32x4d DCN (c3-c5) FPN 1x teacher (box AP 47.3) -> Faster R-CNN R-50 FPN 2x student
# (38.4), FPN levels 0-3 (their neck.fpn_convs.{0..3}.conv; the fifth level is a max-pool),
# T 0.5, alpha 5e-5, beta 2.5e-5, gamma 5e-5, lambda 5e-7 (preset 'two_stage'); the student
# is not initialised from the teacher (different heads; no init_student there either);
# SGD lr 0.02, gradient clipping 35. Published: 42.0.
_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_2x_coco.py'
custom_imports = dict(imports=['mmkd'], allow_failed_imports=False)

levels = ['neck[0]', 'neck[1]', 'neck[2]', 'neck[3]']
model = dict(
    _delete_=True,
    type='mmkd.Distiller',
    student={{_base_.model}},
    teacher=dict(
        config='mmdet::dcn/cascade-mask-rcnn_x101-32x4d-dconv-c3-c5_fpn_1x_coco.py',
        checkpoint='https://download.openmmlab.com/mmdetection/v2.0/dcn/'
                   'cascade_mask_rcnn_x101_32x4d_fpn_dconv_c3-c5_1x_coco/'
                   'cascade_mask_rcnn_x101_32x4d_fpn_dconv_c3-c5_1x_coco-e75f90c8.pth'),
    blocks=dict(
        fpn=dict(student=levels, teacher=levels,
                 method=dict(type='FGD', preset='two_stage'), loss_weight=1.0)))
optim_wrapper = dict(optimizer=dict(lr=0.02), clip_grad=dict(max_norm=35, norm_type=2))
