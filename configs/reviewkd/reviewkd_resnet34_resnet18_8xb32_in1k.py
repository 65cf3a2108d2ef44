# ReviewKD on ImageNet-1k: ResNet-34 teacher (top-1 73.62) -> ResNet-18 student (69.90): the
# pair, checkpoint and mmpretrain recipe of ../kd/kd_resnet34_resnet18_8xb32_in1k.py (100
# epochs, SGD lr 0.1, batch 256) with the block replaced. ReviewKD as the authors'
# ImageNet/README.md (`--review-kd-loss-weight 1.0`, ABF middle width 512) and mdistiller's
# configs/imagenet/r34_r18/reviewkd.yaml (REVIEWKD_WEIGHT 1, WARMUP_EPOCHS 1 with 1-based
# epochs: no warm-up in effect; CE 1): five levels, layer1..layer4 (56, 28, 14, 7) and the
# pooled feature, no logit KD. Both sides are recorded after the stages' last ReLU (the
# authors: before it, STU_PREACT True; mmpretrain's ResNet applies it inside the block).
# The authors report 71.61 (ImageNet/README.md; their student 69.75).
_base_ = '../kd/kd_resnet34_resnet18_8xb32_in1k.py'

POINTS = ('backbone.layer1', 'backbone.layer2', 'backbone.layer3', 'backbone.layer4', 'neck')
model = dict(blocks=dict(
    _delete_=True,
    review=dict(student=POINTS, teacher=POINTS, method=dict(type='ReviewKD'),
                loss_weight=1.0)))
