# letKD-2 on CIFAR-100: resnet56 teacher -> resnet20 student.
# letKD-1 (letkd-1_resnet56_resnet20_cifar100.py)
# plus the intermediate KD layer after the first block of the student's last stage
# (backbone.layer3.0): its scores (100 classes x 8 sub-classes = 800 templates) learn the
# row of the teacher's sub-class score matrix of the sub-class each teacher position
# (backbone.layer3.0, LDA to 60 dimensions) falls in, among its ground-truth
# class's 8. Loss CE + 1.0 * L_penult + 1.0 * L_inter. Templates (configs/letkd/README.md):
#   python tools/analysis/letkd_templates.py configs/cifar100/resnet56_cifar100.py \
#       work_dirs/resnet56_cifar100/epoch_240.pth --point backbone.layer3.0 --kind subclass \
#       --num-subclasses 8 --lda-components 60 --out work_dirs/letkd/resnet56_cifar100/inter.pth
_base_ = './letkd-1_resnet56_resnet20_cifar100.py'

model = dict(
    student_inserts=dict(
        inter=dict(after='backbone.layer3.0',
                   module=dict(type='KDLayer', num_templates=800))),
    blocks=dict(
        inter=dict(student='kd_inserts.inter.scores', teacher='backbone.layer3.0',
                   method=dict(type='LetKDSubclass',
                               templates='work_dirs/letkd/resnet56_cifar100/inter.pth'),
                   loss_weight=1.0)))
