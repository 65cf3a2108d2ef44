# ReviewKD (Chen et al., CVPR 2021): the student's stages and pooled feature fused deepest to
# shallowest by ABF modules (middle width min(512, 32) = 32, the authors' rule), each output
# compared with the teacher's level by the hierarchical context loss (pool sizes 4, 2, 1).
# Points: backbone.layer1..layer4 and the pooled 'neck' on both sides, after the ReLU (the
# authors take the teacher before its last ReLU, which mmpretrain's ResNet cannot record).
# The authors' warm-up (min(epoch / 20, 1) over 240 epochs, a twelfth of the run) scaled to
# this 210-iteration run: 18 iterations. Weight 5, the authors' CIFAR value for ResNet-32x4 ->
# 8x4 and WRN-40-2 -> 16-2, chosen on the tune split (seed 0, top-1: weight 5 -> 85.9,
# 1 -> 79.3, 0.2 -> 70.0; student 61.1, teacher 90.4):
#   python tools/benchmark/quality.py --tune --tasks classification --methods reviewkd \
#       --seeds 0 --variant w5 model.blocks.review.loss_weight.value=5.0 (w1, w0.2 alike)
_base_ = './_base_distill.py'

REVIEW_POINTS = ('backbone.layer1', 'backbone.layer2', 'backbone.layer3', 'backbone.layer4',
                 'neck')
model = dict(
    blocks=dict(
        review=dict(student=REVIEW_POINTS, teacher=REVIEW_POINTS,
                    method=dict(type='ReviewKD'),
                    loss_weight=dict(type='LinearWarmup', value=5.0, warmup=18))))
