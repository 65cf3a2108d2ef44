# CC on CIFAR-100, resnet32x4 -> resnet8x4: RepDistiller's correlation
# (distiller_zoo/CC.py) of linear embeddings (width 128, both trained) of the pooled
# penultimate features ('neck': RepDistiller's feat[-1]), weight 0.02, CE weight 1, no logit
# KD (scripts/run_cifar_distill.sh: --distill correlation -a 0 -b 0.02); 240 epochs, SGD
# lr 0.05, batch 64 (configs/cifar100/README.md).
#   python tools/train.py configs/cifar100/resnet32x4_cifar100.py    # the teacher, first
_base_ = '../cifar100/_distill_resnet32x4_resnet8x4.py'

model = dict(blocks=dict(
    feat=dict(student='neck', teacher='neck',
              method=dict(type='CC', embed_dim=128, kernel='repdistiller'),
              loss_weight=0.02)))
