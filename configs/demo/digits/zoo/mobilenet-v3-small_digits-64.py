# Student baseline for the zoo example: mmpretrain's MobileNetV3-Small (its CIFAR-10 model
# config: 10 classes, 1.7 M parameters) on the upscaled digits (64x64).
#     python tools/train.py configs/demo/digits/zoo/mobilenet-v3-small_digits-64.py
_base_ = [
    'mmpretrain::_base_/models/mobilenet_v3/mobilenet_v3_small_cifar.py',
    './_base_digits-64.py',
]
# One change: BN momentum 0.1 (PyTorch's default) instead of MobileNetV3's 0.01, which is meant
# for hundreds of ImageNet epochs. In this 210-iteration run the running statistics did not
# catch up with the weights: 9.6 % top-1 in eval mode against 91.3 % on batch statistics.
model = dict(backbone=dict(norm_cfg=dict(type='BN', eps=0.001, momentum=0.1)))
