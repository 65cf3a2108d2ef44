# CrossKD on COCO, the authors' RetinaNet pair (jbwang1997/CrossKD at 87e156a4,
# configs/crosskd/crosskd_r50_retinanet_r101_fpn_2x_coco.py): RetinaNet R-101 FPN 2x teacher
# (box AP 38.9) -> RetinaNet R-50 FPN 2x student (37.4). The student's cls / reg features
# after its 3rd head conv (k = 3 of 4; RetinaHead has no norm, so the conv's output) go through
# the teacher's 4th conv and predictors; KD: QFL-style on the scores (beta 1, weight 1), GIoU
# between the boxes the cross-head and the teacher predict, decoded with the student's
# anchors, weighted by the teacher's max class score (weight 1). The student is mmdet's
# retinanet_r50_fpn_2x_coco.py as it is (the authors' config: the same model, 2x schedule and
# SGD lr 0.01 at 16 images per batch). Published: 39.7 (the authors' README).
_base_ = 'mmdet::retinanet/retinanet_r50_fpn_2x_coco.py'
custom_imports = dict(imports=['mmkd'], allow_failed_imports=False)

model = dict(
    _delete_=True,
    type='mmkd.Distiller',
    student={{_base_.model}},
    teacher=dict(
        config='mmdet::retinanet/retinanet_r101_fpn_2x_coco.py',
        checkpoint='https://download.openmmlab.com/mmdetection/v2.0/retinanet/'
                   'retinanet_r101_fpn_2x_coco/retinanet_r101_fpn_2x_coco_20200131-5560aee8.pth'),
    blocks=dict(
        crosskd=dict(
            student=['bbox_head.cls_convs.2.conv', 'bbox_head.reg_convs.2.conv'],
            teacher=['bbox_head.cls_convs.2.conv', 'bbox_head.reg_convs.2.conv',
                     'bbox_head.retina_cls', 'bbox_head.retina_reg'],
            method=dict(type='CrossKD', reused_teacher_head_idx=3),
            loss_weight=1.0)))
