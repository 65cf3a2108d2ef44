# OFD on ImageNet-1k: ResNet-34 teacher (top-1 73.62) -> ResNet-18 student (69.90): the pair,
# checkpoint and mmpretrain recipe of ../kd/kd_resnet34_resnet18_8xb32_in1k.py (100 epochs, SGD
# lr 0.1, batch 256) with the logit-KD block replaced by OFD, as the authors' ImageNet script
# (clovaai/overhaul-distillation ImageNet/train_with_distillation.py: CE + distillation only,
# loss_distill.sum() / batch_size / 10000, so loss weight 1e-4; mdistiller's ImageNet
# FEAT_WEIGHT 0.0001): the 4 stages' last-block features, margins from their bn2 (the
# authors' get_bn_before_relu), level weights 1/8, 1/4, 1/2, 1.
# mmpretrain's BasicBlock adds the identity into bn2's output in place and then applies an
# in-place ReLU, so the bn2 *inputs* are recorded and OFD applies bn2 itself (apply_bn=True).
# Difference: the authors' ResNets return the pre-ReLU residual sum bn2(.) + identity; here
# the bn2 output (before the add) is distilled (mmkd/methods/ofd.py). The authors report
# ImageNet for ResNet-152 -> ResNet-50 and ResNet-50 -> MobileNet; for this pair the ReviewKD
# and DKD papers report OFD at 70.81 top-1 (configs/ofd/README.md).
_base_ = '../kd/kd_resnet34_resnet18_8xb32_in1k.py'

_stages = ('layer1', 'layer2', 'layer3', 'layer4')
_student_bns = [f'backbone.{s}.1.bn2' for s in _stages]                 # (2, 2, 2, 2) blocks
_teacher_bns = [f'backbone.{s}.{j}.bn2' for s, j in zip(_stages, (2, 3, 5, 2))]  # (3, 4, 6, 3)
model = dict(blocks=dict(
    _delete_=True,
    feat=dict(student=[p + '@input' for p in _student_bns],
              teacher=[p + '@input' for p in _teacher_bns],
              method=dict(type='OFD', teacher_bns=_teacher_bns, student_bns=_student_bns,
                          apply_bn=True),
              loss_weight=1e-4)))
