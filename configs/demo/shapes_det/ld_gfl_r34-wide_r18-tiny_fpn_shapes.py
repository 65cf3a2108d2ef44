# Localization distillation (Zheng et al., CVPR 2022) between GFL heads: the teacher's box-side
# distributions at the student's positive locations, T 10, weight 0.25 (mmdet's
# configs/ld/ld_r18-gflv1-r101_fpn_1x_coco.py). LD needs GFL-style heads on both sides, so the
# student is the GFL R-18 (./gfl_r18-tiny_fpn_shapes.py, its own baseline in the grid) and the
# teacher the half-width GFL R-34 (./gfl_r34-wide_fpn_shapes.py) that tools/demo.py trains
# once. The record points are the head's leaves: its classification conv (one call per level)
# and its scaled box predictions (mmkd.methods.LD says why).
_base_ = './gfl_r18-tiny_fpn_shapes.py'
student_baseline = 'configs/demo/shapes_det/gfl_r18-tiny_fpn_shapes.py'

model = dict(
    _delete_=True,  # the base's `model` becomes the student below instead of being merged
    type='mmkd.Distiller',
    student={{_base_.model}},
    teacher=dict(
        config='{{ fileDirname }}/gfl_r34-wide_fpn_shapes.py',
        checkpoint='work_dirs/demo/shapes_det/teacher_gfl.pth'),
    dry_run_input_shape=(2, 3, 64, 64),
    blocks=dict(
        ld=dict(student=['bbox_head.gfl_cls', 'bbox_head.scales.*'],
                teacher='bbox_head.scales.*',
                method=dict(type='LD', tau=10.0), loss_weight=0.25)))
