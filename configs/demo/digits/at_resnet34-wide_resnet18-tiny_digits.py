# Attention transfer (Zagoruyko & Komodakis, ICLR 2017) on the outputs of the four stages, p 2,
# no logit KD, as mdistiller's CIFAR-100 setting (configs/cifar100/at.yaml), except the weight:
# 10, not their 1000, chosen on the tune split (seed 0, top-1: weight 1000 -> 27.8, 100 -> 60.0,
# 10 -> 83.0, 1 -> 74.4; student 62.6; docs/benchmarks.md "Baselines").
_base_ = './_base_distill.py'

stages = ['backbone.layer1', 'backbone.layer2', 'backbone.layer3', 'backbone.layer4']
model = dict(
    blocks=dict(
        stages=dict(student=stages, teacher=stages, method=dict(type='AT', p=2.0),
                    loss_weight=10.0)))
