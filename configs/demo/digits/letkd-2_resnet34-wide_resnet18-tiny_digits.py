# letKD-2: letKD-1 plus the intermediate KD layer after the first block of the student's last
# stage (backbone.layer4.0), whose scores learn the teacher's sub-class score matrix row of the
# sub-class each teacher position of backbone.layer4.0 falls in (the nearest of its
# ground-truth class's 8 sub-classes in LDA space). 10 classes x 8 = 80 templates; LDA to 9
# dimensions (at most classes - 1; the authors' 60 on CIFAR-100). The no-teacher ablation (the
# same layers, no supervision) is this config with both loss weights 0:
#   python tools/benchmark/quality.py --tasks classification --methods letkd-2 \
#       --variant layers-only model.blocks.penult.loss_weight=0 model.blocks.inter.loss_weight=0
_base_ = './letkd-1_resnet34-wide_resnet18-tiny_digits.py'

letkd_templates = dict(
    inter=['--point', 'backbone.layer4.0', '--kind', 'subclass', '--num-subclasses', '8',
           '--lda-components', '9'])
model = dict(
    student_inserts=dict(
        inter=dict(after='backbone.layer4.0',
                   module=dict(type='KDLayer', num_templates=80))),
    blocks=dict(
        inter=dict(student='kd_inserts.inter.scores', teacher='backbone.layer4.0',
                   method=dict(type='LetKDSubclass',
                               templates='work_dirs/demo/digits/letkd_inter.pth'),
                   loss_weight=1.0)))
