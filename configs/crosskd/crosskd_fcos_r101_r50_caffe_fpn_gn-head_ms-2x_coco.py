# CrossKD on COCO, the authors' FCOS pair (jbwang1997/CrossKD at 87e156a4,
# configs/crosskd/crosskd_r50_fcos_r101-2x-ms_caffe_fpn_gn-head_2x_ms_coco.py, detector
# mmdet/models/detectors/crosskd_fcos.py): FCOS R-101 caffe FPN GN-head multi-scale 2x teacher
# (box AP 40.8) -> FCOS R-50 caffe FPN GN-head multi-scale 2x student (38.5). The student's
# cls / reg features after its 2nd head conv (k = 2 of 4) go through the teacher's 3rd and 4th
# convs and predictors (conv_cls; conv_reg with its scale, then exp); KD over all points, both
# divided by the student loss's centerness denominator: QFL-style on the scores (beta 1,
# weight 0.4) and IoU ('log') between the boxes the cross-head and the teacher predict, decoded
# at the student's points, weighted by the teacher's max class score (weight 0.75); no
# centerness KD (the authors' FCOS has none). The student is mmdet's
# fcos_r50-caffe_fpn_gn-head_ms-640-800-2x_coco.py as it is (the authors' config has the same
# model, multi-scale 640-800 pipeline, 2x schedule with the 500-iteration constant warm-up, SGD
# lr 0.01 at 16 images per batch, bias lr x2, no bias decay, gradient clip 35). Published: 41.1
# (the authors' README, "Results / FCOS").
_base_ = 'mmdet::fcos/fcos_r50-caffe_fpn_gn-head_ms-640-800-2x_coco.py'
custom_imports = dict(imports=['mmkd'], allow_failed_imports=False)

model = dict(
    _delete_=True,
    type='mmkd.Distiller',
    student={{_base_.model}},
    teacher=dict(
        config='mmdet::fcos/fcos_r101-caffe_fpn_gn-head_ms-640-800-2x_coco.py',
        checkpoint='https://download.openmmlab.com/mmdetection/v2.0/fcos/'
                   'fcos_r101_caffe_fpn_gn-head_mstrain_640-800_2x_coco/'
                   'fcos_r101_caffe_fpn_gn-head_mstrain_640-800_2x_coco-511424d6.pth'),
    blocks=dict(
        crosskd=dict(
            # k - 1 = 1: the 2nd head conv's GN output (post-ReLU after the in-place ReLU)
            student=['bbox_head.cls_convs.1.gn', 'bbox_head.reg_convs.1.gn'],
            teacher=['bbox_head.cls_convs.1.gn', 'bbox_head.reg_convs.1.gn',
                     'bbox_head.conv_cls', 'bbox_head.scales.*'],
            method=dict(type='CrossKD', reused_teacher_head_idx=2, loss_cls_weight=0.4,
                        loss_reg_weight=0.75),
            loss_weight=1.0)))
