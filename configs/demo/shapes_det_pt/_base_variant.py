# The pretrained-backbone variant's two changes to a from-scratch shapes detection method
# config (issue 33): the student's backbone starts from the shapes classification pretraining
# (configs/demo/shapes_pretrain) and the teacher is the variant's own, trained from its
# pretrained backbone. Each method config of this folder inherits its from-scratch config
# (method, record points and weights unchanged) and this file:
#     _base_ = ['../shapes_det/<method>_retinanet_r34-wide_r18-tiny_fpn_shapes.py', './_base_variant.py']
#     model = {{_base_.variant_model}}
# (MMEngine refuses a key set in two bases, so each config sets `model` from `variant_model`
# below.) tools/demo.py (task 'detection-pt') trains the pretraining once and passes its path with
# --cfg-options; the paths below are where it goes by default. The variant's design:
# ./retinanet_r18-tiny_fpn_shapes_pt.py.
pretrained_student_backbone = 'work_dirs/demo/shapes_pretrain/r18-tiny_det.pth'
variant_teacher = dict(config='{{ fileDirname }}/retinanet_r34-wide_fpn_shapes_pt.py',
                       checkpoint='work_dirs/demo/shapes_det_pt/teacher.pth')

variant_model = dict(
    student=dict(backbone=dict(init_cfg=dict(
        _delete_=True,  # (None in the from-scratch base)
        type='Pretrained', prefix='backbone.', checkpoint=pretrained_student_backbone))),
    teacher=variant_teacher)
