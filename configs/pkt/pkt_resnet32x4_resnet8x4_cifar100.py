# PKT on CIFAR-100, resnet32x4 -> resnet8x4: the pooled penultimate features (the neck, as the
# authors feed mdistiller's feature["pooled_feat"] / RepDistiller's feat_s[-1]), weight 30000, CE
# weight 1, no logit KD (mdistiller CFG.PKT, FEAT_WEIGHT 30000; RepDistiller -a 0 -b 30000); 240
# epochs, SGD lr 0.05, batch 64 (configs/cifar100/README.md).
#   python tools/train.py configs/cifar100/resnet32x4_cifar100.py    # the teacher, first
_base_ = '../cifar100/_distill_resnet32x4_resnet8x4.py'

model = dict(blocks=dict(
    feat=dict(student='neck', teacher='neck', method=dict(type='PKT'), loss_weight=30000.0)))
