# CrossKD on COCO, the authors' ATSS pair (jbwang1997/CrossKD at 87e156a4,
# configs/crosskd/crosskd_r50_atss_r101_fpn_1x_coco.py, detector mmdet/models/detectors/
# crosskd_atss.py): ATSS R-101 FPN 1x teacher (box AP 41.5) -> ATSS R-50 FPN 1x student (39.4).
# The student's cls / reg features after its 3rd head conv (k = 3 of 4) go through the
# teacher's 4th conv and predictors (atss_cls; atss_reg with its scale; atss_centerness on the
# reg branch); KD: QFL-style on the scores (beta 1, weight 1), GIoU between the boxes the
# cross-head and the teacher predict, decoded with the student's anchors, weighted by the
# teacher's max class score (weight 1), and BCE of the cross centerness against the teacher's
# sigmoid centerness on the student's positive anchors (weight 1); the student's ATSS
# assignment. The student is mmdet's atss_r50_fpn_1x_coco.py as it is (the authors' config
# has the same model, 1x schedule and SGD lr 0.01 at 16 images per batch). Published: 41.8
# (the authors' README, "Results / ATSS").
_base_ = 'mmdet::atss/atss_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['mmkd'], allow_failed_imports=False)

model = dict(
    _delete_=True,
    type='mmkd.Distiller',
    student={{_base_.model}},
    teacher=dict(
        config='mmdet::atss/atss_r101_fpn_1x_coco.py',
        checkpoint='https://download.openmmlab.com/mmdetection/v2.0/atss/'
                   'atss_r101_fpn_1x_coco/atss_r101_fpn_1x_20200825-dfcadd6f.pth'),
    blocks=dict(
        crosskd=dict(
            # pre-activation norm outputs; the ConvModule's in-place ReLU makes them the
            # post-ReLU features, exactly what the authors' code holds (mmkd.methods.CrossKD);
            # the teacher's centernesses come last
            student=['bbox_head.cls_convs.2.gn', 'bbox_head.reg_convs.2.gn'],
            teacher=['bbox_head.cls_convs.2.gn', 'bbox_head.reg_convs.2.gn',
                     'bbox_head.atss_cls', 'bbox_head.scales.*',
                     'bbox_head.atss_centerness'],
            method=dict(type='CrossKD', reused_teacher_head_idx=3),
            loss_weight=1.0)))
