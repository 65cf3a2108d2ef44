# DKD on ImageNet-1k: ResNet-34 teacher (top-1 73.62) -> ResNet-18 student (69.90): the pair,
# checkpoint and mmpretrain recipe of ../kd/kd_resnet34_resnet18_8xb32_in1k.py (100 epochs, SGD
# lr 0.1, batch 256) with the logits block's method swapped. DKD as mdistiller's
# configs/imagenet/r34_r18/dkd.yaml: alpha 1, beta 0.5, T 1, CE 1, warm-up 1 epoch (there: batch
# 512, lr 0.2, the same schedule). mdistiller reports 71.70.
_base_ = '../kd/kd_resnet34_resnet18_8xb32_in1k.py'

model = dict(blocks=dict(logits=dict(
    method=dict(_delete_=True, type='DKD', alpha=1.0, beta=0.5, tau=1.0),
    loss_weight=dict(_delete_=True, type='LinearWarmup', value=1.0, warmup=1, by_epoch=True))))
