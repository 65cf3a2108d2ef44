# Logit KD (Hinton et al., 2015) on ImageNet-1k: ResNet-34 teacher -> ResNet-18 student.
# The student, data, schedule and runtime are mmpretrain's resnet18_8xb32_in1k, unchanged.
# Loss: CE + 3 * tau^2 * KL at tau 1, MMRazor's recipe for this very pair, base config and
# teacher checkpoint (kd_logits_resnet34_resnet18_8xb32_in1k, loss_weight 3 in the version
# that trained its released model "kl_r18_w3": top-1 71.81; student alone 69.90).
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
    blocks=dict(
        logits=dict(student='head.fc', teacher='head.fc',
                    method=dict(type='LogitKD', tau=1.0), loss_weight=3.0)))
