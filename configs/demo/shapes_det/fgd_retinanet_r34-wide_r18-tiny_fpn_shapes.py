# FGD (Yang et al., CVPR 2022) on every FPN level: focal (box masks from the data samples,
# spatial and channel attention of the teacher) and global (GcBlock) terms, one set of modules
# per level. The authors' RetinaNet setting (yzd-v/FGD configs/distillers/fgd/
# fgd_retina_rx101_64x4d_distill_retina_r50_fpn_2x_coco.py: T 0.5, alpha 1e-3, beta 5e-4,
# gamma 5e-4, lambda 5e-6, levels summed). The 1x1 align conv sizes itself (64 -> 128
# channels). Unlike the authors (init_student=True), the student's neck and head are not
# initialised from the teacher: their widths differ here (64 vs 128 channels), so the
# Distiller's init_student_from=dict(teacher='teacher', prefixes=['neck', 'bbox_head'])
# would fail its shape check; it applies to the full-scale pairs (configs/fgd/).
# Block weight 1 (the authors' alpha..lambda as they are) chosen on the tune split (teacher
# 46.2 mAP there; student 26.3 / 26.6 on seeds 0 / 1):
#     weight 0.1: 28.4 (seed 0);  0.3: 29.4, 27.9 (seeds 0, 1);  1: 28.6, 30.1 (seeds 0, 1)
#   python tools/benchmark/quality.py --tune --tasks detection --methods fgd --seeds 0 --jobs 1 \
#       --threads 1 --work-dir work_dirs/h32_fgd/tune \
#       --teacher-work-dir work_dirs/h32_fbkd/tune_teachers \
#       --variant w0.1 model.blocks.fpn.loss_weight=0.1 \
#       --variant w0.3 model.blocks.fpn.loss_weight=0.3 --variant w1 model.blocks.fpn.loss_weight=1
#   (then --seeds 1 with the w0.3 and w1 variants).
_base_ = './_base_distill.py'

model = dict(
    blocks=dict(
        fpn=dict(student='neck', teacher='neck',
                 method=dict(type='FGD', preset='retinanet'), loss_weight=1.0)))
