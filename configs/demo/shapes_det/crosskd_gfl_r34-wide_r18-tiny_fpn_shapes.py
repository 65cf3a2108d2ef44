# CrossKD (Wang et al., CVPR 2024) between GFL heads on the shapes data: the student's head
# features after its first conv (k = reused_teacher_head_idx = 1) go through the teacher's
# remaining head (its second conv, gfl_cls / gfl_reg and scales); the teacher's predictions
# supervise that cross-head output (QFL-style KD on the scores, KL on the box distributions,
# the authors' weights 1 and 4: mmkd.methods.CrossKD).
#
# The GFL pair is LD's (./ld_gfl_r34-wide_r18-tiny_fpn_shapes.py, whose distiller this file
# reuses with its block replaced): the teacher ./gfl_r34-wide_fpn_shapes.py, trained once by
# tools/demo.py, and the student ./gfl_r18-tiny_fpn_shapes.py with one change. Crossing needs
# one head width on both sides (the authors' pairs are all 256-wide heads; align_scale works
# per channel and their code assumes equal channels): the teacher's head is 128 wide, the
# student baseline's 64, so the student here has its head at the teacher's width,
# feat_channels=128 (backbone and neck unchanged; the head's input stays the 64-channel FPN).
# The demo heads have 2 stacked convs, not the authors' 4: k = 1 keeps their shape (one
# teacher conv + the predictors after the crossing; theirs is k = 3 of 4).
# The grid compares it with that student trained alone (student_baseline below,
# ./gfl_r18-tiny-head128_fpn_shapes.py), not with LD's 64-wide-head student.
#
# Block weight 2 (the method's own weights stay the authors' 1 and 4), chosen on the tuning
# split, seed 0 (bbox mAP %; GFL teacher 44.0; GFL student baseline, 64-wide head, 18.5):
#     loss_weight 0 (this student alone) 24.0 | 1 (authors') 35.7 | 2 39.4 | 4 39.2
# python tools/benchmark/quality.py --tune --tasks detection --methods crosskd \
#     --seeds 0 --jobs 1 --threads 1 --work-dir work_dirs/h32_C \
#     --variant w0 model.blocks.crosskd.loss_weight=0 \
#     --variant w2 model.blocks.crosskd.loss_weight=2     (then w1 ...=1 and w4 ...=4)
_base_ = './ld_gfl_r34-wide_r18-tiny_fpn_shapes.py'

model = dict(
    student=dict(bbox_head=dict(feat_channels=128)),  # the teacher's head width (see above)
    blocks=dict(
        _delete_=True,
        crosskd=dict(
            student=['bbox_head.cls_convs.0.gn', 'bbox_head.reg_convs.0.gn'],
            teacher=['bbox_head.cls_convs.0.gn', 'bbox_head.reg_convs.0.gn',
                     'bbox_head.gfl_cls', 'bbox_head.scales.*'],
            method=dict(type='CrossKD', reused_teacher_head_idx=1),
            loss_weight=2.0)))

student_baseline = 'configs/demo/shapes_det/gfl_r18-tiny-head128_fpn_shapes.py'
