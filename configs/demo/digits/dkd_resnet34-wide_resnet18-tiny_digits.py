# DKD (Zhao et al., CVPR 2022): target-class and non-target-class KD decoupled, on the logits;
# the authors' CIFAR-100 alpha 1 and T 4; beta 2 (their value for ResNet-56/110 teachers, not
# the default 8), chosen on the tune split (seed 0, top-1: beta 8 -> 83.0, 2 -> 86.3, 1 -> 84.4;
# docs/benchmarks.md "Baselines"). Their warm-up (the whole loss x min(epoch / 20,
# 1) over 240 epochs, a twelfth of the run) scaled to this 210-iteration run: 18 iterations.
_base_ = './_base_distill.py'

model = dict(
    blocks=dict(
        logits=dict(student='head.fc', teacher='head.fc',
                    method=dict(type='DKD', alpha=1.0, beta=2.0, tau=4.0),
                    loss_weight=dict(type='LinearWarmup', value=1.0, warmup=18))))
