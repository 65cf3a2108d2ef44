# letKD-1 (Gorgun et al., BMVC 2023; docs/methods/letkd.md): a KD layer inserted after the
# student's last stage (backbone.layer4, 32 channels, 2x2) and kept at inference; its scores
# against K templates learn the teacher's soft assignment of its last-stage features to K
# k-means centres. K = 64 here (the authors' 4,096 is for 3.2 M CIFAR-100 positions; the digits
# give 5,388), alpha 1, scales 3 / 1, T 1, loss weight 1, no logit KD (all the authors').
# The templates file is made from the trained teacher by tools/analysis/letkd_templates.py with
# the arguments in `letkd_templates` (tools/demo.py and quality.py do it after the teacher).
_base_ = './_base_distill.py'

letkd_templates = dict(
    penult=['--point', 'backbone.layer4', '--kind', 'kmeans', '--num-templates', '64'])
penult_insert = dict(after='backbone.layer4',
                     module=dict(type='KDLayer', num_templates=64))
penult_block = dict(student='kd_inserts.penult.scores', teacher='backbone.layer4',
                    method=dict(type='LetKD',
                                templates='work_dirs/demo/digits/letkd_penult.pth'),
                    loss_weight=1.0)
model = dict(student_inserts=dict(penult=penult_insert), blocks=dict(penult=penult_block))
