# PKT (Passalis & Tefas, ECCV 2018): the batch's cosine-similarity distributions of the pooled
# features (neck, 128 vs 256 channels) matched by KL, no logit KD, CE weight 1, as mdistiller's
# CIFAR-100 setting (CFG.PKT); the weight is theirs, 30000, confirmed on the tune split (seed 0,
# top-1: weight 100000 -> 82.6, 30000 -> 84.8, 10000 -> 81.1, 3000 -> 80.7, 300 -> 67.8; student
# 61.1, teacher 90.4):
#   python tools/benchmark/quality.py --tune --tasks classification --methods pkt --seeds 0 \
#       --jobs 1 --threads 1 --variant w30000 model.blocks.feat.loss_weight=30000 ...
_base_ = './_base_distill.py'

model = dict(
    blocks=dict(
        feat=dict(student='neck', teacher='neck', method=dict(type='PKT'), loss_weight=30000.0)))
