# letKD-1 on ImageNet-1k: ResNet-34 teacher -> ResNet-18 student (docs/methods/letkd.md). The
# KD layer (4,096 templates) after the student's last stage (backbone.layer4, 512 x 7 x 7);
# targets from 4,096 k-means centres of the teacher's backbone.layer4. Student, data and
# schedule are mmpretrain's resnet18_8xb32_in1k: 100 epochs, SGD lr 0.1 (batch 256), x0.1 at
# 30/60/90, the paper's ImageNet recipe. Templates from the teacher (mmpretrain's checkpoint):
#   python tools/analysis/letkd_templates.py mmpretrain::resnet/resnet34_8xb32_in1k.py \
#       https://download.openmmlab.com/mmclassification/v0/resnet/resnet34_8xb32_in1k_20210831-f257d4e6.pth \
#       --point backbone.layer4 --kind kmeans --num-templates 4096 --max-samples 1000000 \
#       --out work_dirs/letkd/resnet34_in1k/penult.pth
# (the authors cluster every position; --max-samples bounds memory: 1 M x 512 floats = 2 GB).
_base_ = 'mmpretrain::resnet/resnet18_8xb32_in1k.py'
custom_imports = dict(imports=['mmkd'], allow_failed_imports=False)

model = dict(
    _delete_=True,
    type='mmkd.Distiller',
    student={{_base_.model}},
    teacher=dict(
        config='mmpretrain::resnet/resnet34_8xb32_in1k.py',
        # mmpretrain metafile: resnet34_8xb32_in1k, top-1 73.62
        checkpoint='https://download.openmmlab.com/mmclassification/v0/resnet/'
                   'resnet34_8xb32_in1k_20210831-f257d4e6.pth'),
    student_inserts=dict(
        penult=dict(after='backbone.layer4',
                    module=dict(type='KDLayer', num_templates=4096))),
    blocks=dict(
        penult=dict(student='kd_inserts.penult.scores', teacher='backbone.layer4',
                    method=dict(type='LetKD',
                                templates='work_dirs/letkd/resnet34_in1k/penult.pth'),
                    loss_weight=1.0)))
