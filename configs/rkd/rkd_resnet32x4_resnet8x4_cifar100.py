# RKD on CIFAR-100, resnet32x4 -> resnet8x4: distance (weight 25) and angle (weight 50)
# relations of the batch's pooled penultimate features ('neck', the globally average-pooled
# last stage: mdistiller's pooled_feat), loss weight 1, CE weight 1, no logit KD (mdistiller
# configs/cifar100/rkd.yaml with the CFG.RKD defaults); 240 epochs, SGD lr 0.05, batch 64
# (configs/cifar100/README.md).
#   python tools/train.py configs/cifar100/resnet32x4_cifar100.py    # the teacher, first
_base_ = '../cifar100/_distill_resnet32x4_resnet8x4.py'

model = dict(blocks=dict(
    feat=dict(student='neck', teacher='neck',
              method=dict(type='RKD', distance_weight=25.0, angle_weight=50.0),
              loss_weight=1.0)))
