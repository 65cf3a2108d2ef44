# diffkd on the pretrained-backbone shapes detection variant (issue 33):
# the from-scratch config (first base) with the variant's backbones and teacher (second).
_base_ = ['../shapes_det/diffkd_retinanet_r34-wide_r18-tiny_fpn_shapes.py', './_base_variant.py']
model = dict(student=dict(backbone=dict(init_cfg=dict(
    _delete_=True,  # (None in the from-scratch base)
    type='Pretrained', prefix='backbone.',
    checkpoint={{_base_.pretrained_student_backbone}}))),
    teacher={{_base_.variant_teacher}})
