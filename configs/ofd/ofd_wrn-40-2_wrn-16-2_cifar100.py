# OFD on CIFAR-100, wrn-40-2 -> wrn-16-2: the authors' WRN features exactly: each stage's
# output through the BN that follows it (layer2.0.bn1, layer3.0.bn1, final_norm.0), pre-ReLU,
# on both sides (clovaai/overhaul-distillation CIFAR-100/models/WideResNet.py
# extract_feature(preReLU=True); mdistiller wrn.py get_bn_before_relu). final_norm.0's output
# is overwritten by its in-place ReLU, so the BN *inputs* are recorded and OFD applies the BNs
# (apply_bn=True; the values and gradients of the BN outputs). Level weights 1/4, 1/2, 1, loss
# weight 1e-3 (the authors' / batch / 1000; mdistiller FEAT_WEIGHT), CE 1, no logit KD
# (mdistiller configs/cifar100/ofd.yaml); 240 epochs, SGD lr 0.05, batch 64.
#   python tools/train.py configs/cifar100/wrn-40-2_cifar100.py    # the teacher, first
_base_ = '../cifar100/_distill_wrn-40-2_wrn-16-2.py'

_bns = ['backbone.layer2.0.bn1', 'backbone.layer3.0.bn1', 'backbone.final_norm.0']
_points = [p + '@input' for p in _bns]
model = dict(blocks=dict(
    feat=dict(student=_points, teacher=_points,
              method=dict(type='OFD', teacher_bns=_bns, student_bns=_bns, apply_bn=True),
              loss_weight=1e-3)))
