# OFD (Heo et al., ICCV 2019) on the shapes detection demo: the backbone's 4 stages (the FPN's
# inputs; the authors distil the backbone also in their detection and segmentation runs),
# pre-ReLU features of each stage's last block through a conv1x1 + BN connector (16..128 ->
# 32..256 channels), margins from the teacher's bn2, level weights 1/8, 1/4, 1/2, 1. mmdet's
# BasicBlock overwrites bn2's output in place (+= identity, in-place ReLU), so the bn2 inputs are
# recorded and OFD applies bn2 (apply_bn=True): the bn2 outputs are distilled, not the authors'
# residual sums (mmkd/methods/ofd.py). Loss weight 1e-3: the authors' CIFAR scale, NOT tuned on
# the shapes tune split (not run).
_base_ = './_base_distill.py'

_stages = ('layer1', 'layer2', 'layer3', 'layer4')
_student_bns = [f'backbone.{s}.1.bn2' for s in _stages]                 # 2 per stage
_teacher_bns = [f'backbone.{s}.{j}.bn2' for s, j in zip(_stages, (2, 3, 5, 2))]
model = dict(
    blocks=dict(
        backbone=dict(student=[p + '@input' for p in _student_bns],
                      teacher=[p + '@input' for p in _teacher_bns],
                      method=dict(type='OFD', teacher_bns=_teacher_bns,
                                  student_bns=_student_bns, apply_bn=True),
                      loss_weight=1e-3)))
