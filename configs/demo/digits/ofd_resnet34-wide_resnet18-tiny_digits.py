# OFD (Heo et al., ICCV 2019): partial L2 between the connected student (conv1x1 + BN) and the
# teacher's pre-ReLU features of the 4 stages' last blocks, margins from the teacher's bn2, level
# weights 1/8, 1/4, 1/2, 1, no logit KD, as the authors' ImageNet ResNet setting. mmpretrain's
# BasicBlock overwrites bn2's output in place (+= identity, in-place ReLU), so the bn2 inputs are
# recorded and OFD applies bn2 (apply_bn=True): the bn2 outputs are distilled, not the authors'
# residual sums (mmkd/methods/ofd.py). Loss weight 1e-3, the authors' CIFAR-100 scale
# (/ batch / 1000), confirmed on the tune split (seed 0, top-1: weight 1e-2 -> 50.00,
# 1e-3 -> 77.41, 1e-4 -> 64.07; student 61.11, teacher 90.37):
#   python tools/benchmark/quality.py --tune --tasks classification --methods ofd --seeds 0 \
#       --jobs 1 --threads 1 --teacher-work-dir work_dirs/h30_rkd_tune/teachers \
#       --variant w1e-2 model.blocks.feat.loss_weight=1e-2 \
#       --variant w1e-4 model.blocks.feat.loss_weight=1e-4 (and w1e-3 alike)
_base_ = './_base_distill.py'

_stages = ('layer1', 'layer2', 'layer3', 'layer4')
_student_bns = [f'backbone.{s}.1.bn2' for s in _stages]                 # ResNet-18: 2 per stage
_teacher_bns = [f'backbone.{s}.{j}.bn2' for s, j in zip(_stages, (2, 3, 5, 2))]  # ResNet-34
model = dict(
    blocks=dict(
        feat=dict(student=[p + '@input' for p in _student_bns],
                  teacher=[p + '@input' for p in _teacher_bns],
                  method=dict(type='OFD', teacher_bns=_teacher_bns, student_bns=_student_bns,
                              apply_bn=True),
                  loss_weight=1e-3)))
