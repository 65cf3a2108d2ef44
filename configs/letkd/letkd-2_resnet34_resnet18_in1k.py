# letKD-2 on ImageNet-1k: letKD-1 (letkd-1_resnet34_resnet18_in1k.py) plus the intermediate KD
# layer after the first block of the last stage (backbone.layer4.0): 1,000 classes x 8
# sub-classes = 8,000 templates; LDA to 60 dimensions (the authors' CIFAR-100 value; their
# ImageNet setting is not in the configs they released). The score matrix is 8,000 x 8,000
# (256 MB, held in memory, not saved in checkpoints). Templates:
#   python tools/analysis/letkd_templates.py mmpretrain::resnet/resnet34_8xb32_in1k.py \
#       https://download.openmmlab.com/mmclassification/v0/resnet/resnet34_8xb32_in1k_20210831-f257d4e6.pth \
#       --point backbone.layer4.0 --kind subclass --num-subclasses 8 --lda-components 60 \
#       --max-samples 1000000 --out work_dirs/letkd/resnet34_in1k/inter.pth
_base_ = './letkd-1_resnet34_resnet18_in1k.py'

model = dict(
    student_inserts=dict(
        inter=dict(after='backbone.layer4.0',
                   module=dict(type='KDLayer', num_templates=8000))),
    blocks=dict(
        inter=dict(student='kd_inserts.inter.scores', teacher='backbone.layer4.0',
                   method=dict(type='LetKDSubclass',
                               templates='work_dirs/letkd/resnet34_in1k/inter.pth'),
                   loss_weight=1.0)))
