# BYOT (Zhang et al., ICCV 2019) on CIFAR-100, ResNet-50 self-distilled: a shallow classifier
# (mmkd.AuxExit: the reimplementation's bottleneck to layer4's 2048 channels and 4x4 map, pool,
# fc) after layer1, layer2 and layer3, each learning from the labels, from the network's own
# deepest logits and from its pooled features (teacher points 'self:...', detached). alpha 0.1,
# T 3, feature weight 1e-6 summed over the batch of 128, the deepest classifier's CE at
# 1 - alpha: the reimplementation's train.py (configs/byot/README.md for the paper's numbers
# and where the paper, that code and MMRazor differ). The exits are training-only branches:
#   python tools/model_converters/extract_student.py \
#       work_dirs/byot_resnet50_cifar100/epoch_200.pth s.pth
#   python tools/test.py configs/byot/resnet50_cifar100.py s.pth       # the plain ResNet-50
_base_ = './_self_distill_resnet50_cifar100.py'

alpha = 0.1
exit_module = dict(type='mmkd.AuxExit', num_classes=100, match='backbone.layer4')
byot = dict(type='BYOT', alpha=alpha, tau=3.0, feature_weight=1e-6)
deepest = ['self:head.fc', 'self:head.fc@input']  # logits and pooled features, detached
model = dict(
    student=dict(head=dict(loss=dict(loss_weight=1 - alpha))),
    student_inserts=dict(
        exit1=dict(after='backbone.layer1', mode='branch', module=exit_module),
        exit2=dict(after='backbone.layer2', mode='branch', module=exit_module),
        exit3=dict(after='backbone.layer3', mode='branch', module=exit_module)),
    blocks=dict(
        exit1=dict(student=['kd_inserts.exit1', 'kd_inserts.exit1.fc@input'],
                   teacher=deepest, method=byot),
        exit2=dict(student=['kd_inserts.exit2', 'kd_inserts.exit2.fc@input'],
                   teacher=deepest, method=byot),
        exit3=dict(student=['kd_inserts.exit3', 'kd_inserts.exit3.fc@input'],
                   teacher=deepest, method=byot)))
