# CRD on CIFAR-100, resnet56 -> resnet20: contrastive representation distillation of the pooled
# penultimate features ('neck', the authors' feat[-1] / mdistiller's pooled_feat), embedding
# 128, 16384 negatives of other classes per image (the authors' 'exact' mode), temperature 0.07,
# momentum 0.5, memory banks of the 50,000 training images; loss weight 0.8, CE weight 1, no
# logit KD (RepDistiller README: train_student.py --distill crd -a 0 -b 0.8; mdistiller
# configs/cifar100/crd.yaml with CFG.CRD); 240 epochs, SGD lr 0.05, batch 64
# (configs/cifar100/README.md).
#   python tools/train.py configs/cifar100/resnet56_cifar100.py    # the teacher, first
_base_ = '../cifar100/_distill_resnet56_resnet20.py'

model = dict(blocks=dict(
    crd=dict(student='neck', teacher='neck',
             method=dict(type='CRD', num_samples=50000, feat_dim=128, nce_k=16384,
                         temperature=0.07, momentum=0.5, negatives='other_class'),
             loss_weight=0.8)))
