# CRD on ImageNet-1k: ResNet-34 teacher (top-1 73.62) -> ResNet-18 student (69.90): the pair,
# checkpoint and mmpretrain recipe of ../kd/kd_resnet34_resnet18_8xb32_in1k.py (100 epochs, SGD
# lr 0.1, batch 256), the logit-KD block replaced by CRD as mdistiller's
# configs/imagenet/r34_r18/crd.yaml (a08d46f) with its CFG.CRD defaults: the pooled 512-channel
# features of both, embedding 128, 16384 negatives, T 0.07, momentum 0.5, loss weight 0.8, CE 1,
# no logit KD (there: batch 256, lr 0.1, wd 1e-4, the same schedule). The banks hold every
# training image: num_samples = 1,281,167 (ImageNet-1k's train split), 2 x 1,281,167 x 128
# floats = 1.3 GB, saved in every checkpoint.
_base_ = '../kd/kd_resnet34_resnet18_8xb32_in1k.py'

model = dict(blocks=dict(
    _delete_=True,
    crd=dict(student='neck', teacher='neck',
             method=dict(type='CRD', num_samples=1281167, feat_dim=128, nce_k=16384,
                         temperature=0.07, momentum=0.5, negatives='other_class'),
             loss_weight=0.8)))
