# fitnet on the pretrained-backbone shapes detection variant (issue 33, part 6):
# ../shapes_det/fitnet_retinanet_r34-wide_r18-tiny_fpn_shapes.py
# unchanged (method, points, weight), but the student's backbone starts from the shapes
# classification pretraining and the teacher is the variant's (trained from its own pretrained
# backbone). See ./retinanet_r18-tiny_fpn_shapes_pt.py for the variant's design.
_base_ = '../shapes_det/fitnet_retinanet_r34-wide_r18-tiny_fpn_shapes.py'
model = dict(
    student=dict(backbone=dict(init_cfg=dict(
        _delete_=True,  # the base's init_cfg is None (from scratch)
        type='Pretrained', checkpoint='work_dirs/demo/shapes_pretrain/r18-tiny_det.pth',
        prefix='backbone.'))),
    teacher=dict(config='{{ fileDirname }}/retinanet_r34-wide_fpn_shapes_pt.py',
                 checkpoint='work_dirs/demo/shapes_det_pt/teacher.pth'))
