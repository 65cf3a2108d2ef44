# diffkd on the pretrained-backbone shapes segmentation variant (issue 33, part 6):
# ../shapes_seg/diffkd_deeplabv3_r34-wide_r18-tiny-d8_shapes.py
# unchanged (method, points, weight), but the student's backbone starts from the shapes
# classification pretraining and the teacher is the variant's (trained from its own pretrained
# backbone). See ./deeplabv3_r18-tiny-d8_shapes_pt.py for the variant's design.
_base_ = '../shapes_seg/diffkd_deeplabv3_r34-wide_r18-tiny-d8_shapes.py'
model = dict(
    student=dict(backbone=dict(init_cfg=dict(
        type='Pretrained', checkpoint='work_dirs/demo/shapes_pretrain/r18-tiny_seg.pth',
        prefix='backbone.'))),
    teacher=dict(config='{{ fileDirname }}/deeplabv3_r34-wide-d8_shapes_pt.py',
                 checkpoint='work_dirs/demo/shapes_seg_pt/teacher.pth'))
