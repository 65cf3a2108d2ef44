# CrossKD on COCO, the authors' main GFL pair (jbwang1997/CrossKD at 87e156a4,
# configs/crosskd/crosskd_r50_gflv1_r101-2x-ms_fpn_1x_coco.py): GFL R-101 FPN multi-scale 2x
# teacher (box AP 44.7 in mmdet's metafile; 44.9 in the authors' README) -> GFL R-50 FPN 1x
# student (40.2). The student's cls / reg features after its 3rd head conv (k = 3 of 4) go
# through the teacher's 4th conv and predictors; KD: QFL-style on the scores (beta 1, weight 1),
# KL on the box distributions (T 1, bins summed, weight 4), the student's ATSS assignment.
# The student is mmdet's gfl_r50_fpn_1x_coco.py as it is (the authors' config has the same
# model, schedule and SGD lr 0.01 at 16 images per batch). Published: 43.7 (the authors'
# README; paper Table: GFL R-50 40.2 -> 43.7).
_base_ = 'mmdet::gfl/gfl_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['mmkd'], allow_failed_imports=False)

model = dict(
    _delete_=True,
    type='mmkd.Distiller',
    student={{_base_.model}},
    teacher=dict(
        config='mmdet::gfl/gfl_r101_fpn_ms-2x_coco.py',
        checkpoint='https://download.openmmlab.com/mmdetection/v2.0/gfl/'
                   'gfl_r101_fpn_mstrain_2x_coco/'
                   'gfl_r101_fpn_mstrain_2x_coco_20200629_200126-dd12f847.pth'),
    blocks=dict(
        crosskd=dict(
            # pre-activation norm outputs; the ConvModule's in-place ReLU makes them the
            # post-ReLU features, exactly what the authors' code holds (mmkd.methods.CrossKD)
            student=['bbox_head.cls_convs.2.gn', 'bbox_head.reg_convs.2.gn'],
            teacher=['bbox_head.cls_convs.2.gn', 'bbox_head.reg_convs.2.gn',
                     'bbox_head.gfl_cls', 'bbox_head.scales.*'],
            method=dict(type='CrossKD', reused_teacher_head_idx=3),
            loss_weight=1.0)))
