# RLD on ImageNet-1k: ResNet-34 teacher (top-1 73.62) -> ResNet-18 student (69.90): the pair,
# checkpoint and recipe of ../kd/kd_resnet34_resnet18_8xb32_in1k.py with the logits block's
# method swapped. RLD as the authors' configs/imagenet/r34_r18/rld.yaml (zju-SWJ/RLD): alpha 1,
# beta 0.5, T 1 (SCD at T, their README's --same-t), warm-up 1 epoch.
_base_ = '../kd/kd_resnet34_resnet18_8xb32_in1k.py'

model = dict(blocks=dict(logits=dict(
    method=dict(_delete_=True, type='RLD', alpha=1.0, beta=0.5, tau=1.0),
    loss_weight=dict(_delete_=True, type='LinearWarmup', value=1.0, warmup=1, by_epoch=True))))
