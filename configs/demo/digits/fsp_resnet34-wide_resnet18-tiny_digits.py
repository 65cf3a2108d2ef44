# FSP (Yim et al., CVPR 2017): the Gram matrices between consecutive stage outputs (the four
# stages, three pairs), as a first stage: RepDistiller trains 30 init epochs of FSP before its
# 240 (helper/pretrain.py), here the block is on in the first of the 10 epochs and off after
# (a Step schedule; the cross-entropy stays on, mmkd/methods/fsp.py says what else differs).
# The digits teacher (quarter width) and student (sixteenth) differ in channels at every stage,
# so a 1x1 connector maps the student's to the teacher's (connector='conv1x1', not the authors').
# Weight 1 (the authors' init-stage weight), chosen on the tune split (seed 0, top-1: value 1
# -> 64.1, value 10 -> 47.8; student 61.1, teacher 90.4):
#   python tools/benchmark/quality.py --tune --tasks classification --methods fsp --seeds 0 \
#       --jobs 1 --threads 1 --teacher-work-dir work_dirs/h30_rkd_tune/teachers \
#       --variant w1 model.blocks.stages.loss_weight.value=1.0   (--variant w10 ...=10.0 alike)
_base_ = './_base_distill.py'

stages = ['backbone.layer1', 'backbone.layer2', 'backbone.layer3', 'backbone.layer4']
model = dict(
    blocks=dict(
        stages=dict(student=stages, teacher=stages,
                    method=dict(type='FSP', connector='conv1x1'),
                    loss_weight=dict(type='Step', value=1.0, milestones=[1], gamma=0.0,
                                     by_epoch=True))))
