# ReviewKD on CIFAR-100, resnet32x4 -> resnet8x4: ABF fusion of the student's layer1..layer3 and
# pooled feature (middle width min(512, 256) = 256), HCL against the teacher's same points, loss
# weight 5 warmed up as min(epoch / 20, 1), CE weight 1, no logit KD (the authors'
# CIFAR-100/script/reviewKD.sh `--kd-loss-weight 5.0`, `--kd-warm-up 20`; mdistiller
# configs/cifar100/reviewkd.yaml, CFG.REVIEWKD); 240 epochs, SGD lr 0.05, batch 64
# (configs/cifar100/README.md). The teacher's stages are recorded after their last ReLU (the
# authors: before it; CifarResNet applies it inside the block): see configs/reviewkd/README.md.
#   python tools/train.py configs/cifar100/resnet32x4_cifar100.py    # the teacher, first
_base_ = '../cifar100/_distill_resnet32x4_resnet8x4.py'

POINTS = ('backbone.layer1', 'backbone.layer2', 'backbone.layer3', 'neck')
model = dict(blocks=dict(
    review=dict(student=POINTS, teacher=POINTS,
                method=dict(type='ReviewKD'),
                loss_weight=dict(type='LinearWarmup', value=5.0, warmup=20, by_epoch=True))))
