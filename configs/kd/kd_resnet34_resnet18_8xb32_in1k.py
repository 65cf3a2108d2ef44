# Logit KD (Hinton et al., 2015) on ImageNet-1k: ResNet-34 teacher -> ResNet-18 student.
# The student, data, schedule and runtime are mmpretrain's resnet18_8xb32_in1k, unchanged.
_base_ = 'mmpretrain::resnet/resnet18_8xb32_in1k.py'
custom_imports = dict(imports=['mmkd'], allow_failed_imports=False)

model = dict(
    _delete_=True,
    type='mmkd.SingleTeacherDistiller',
    student={{_base_.model}},
    teacher=dict(
        config='mmpretrain::resnet/resnet34_8xb32_in1k.py',
        # mmpretrain metafile: resnet34_8xb32_in1k, top-1 73.62
        checkpoint='https://download.openmmlab.com/mmclassification/v0/resnet/'
                   'resnet34_8xb32_in1k_20210831-f257d4e6.pth'),
    blocks=dict(
        logits=dict(student='head.fc', teacher='head.fc',
                    method=dict(type='LogitKD', tau=1.0), loss_weight=1.0)))
