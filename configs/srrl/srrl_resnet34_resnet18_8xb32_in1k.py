# SRRL on ImageNet-1k: ResNet-34 teacher (top-1 73.62) -> ResNet-18 student (69.90): the pair,
# checkpoint and mmpretrain recipe of ../kd/kd_resnet34_resnet18_8xb32_in1k.py (100 epochs, SGD
# lr 0.1, batch 256), the logit-KD block replaced by SRRL as the authors' train_imagenet_
# distillation.py runs it (jingyang2017/KD_SRRL): the last stage's map (512 channels on both)
# through a 1x1 conv + BN + ReLU connector, pooled, the teacher's frozen head.fc; pooled features'
# MSE + logits' MSE, both weight 1 (there: batch 512, lr 0.2, steps at 30/60/90 of 100 epochs).
_base_ = '../kd/kd_resnet34_resnet18_8xb32_in1k.py'

model = dict(blocks=dict(
    _delete_=True,
    srrl=dict(student='backbone', teacher='backbone',
             method=dict(type='SRRL', classifier='head.fc', feat_weight=1.0, sr_weight=1.0),
             loss_weight=1.0)))
