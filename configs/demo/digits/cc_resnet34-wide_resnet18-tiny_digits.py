# CC (Peng et al., ICCV 2019): linear embeddings (width 128, both trained) of the pooled
# penultimate features ('neck': the student's 32 and the teacher's 128 channels), RepDistiller's
# correlation (distiller_zoo/CC.py), no logit KD, as its CIFAR-100 runs (-a 0 -b 0.02).
# Weight 0.02 (the authors'), chosen on the tune split (seed 0, top-1: weight 0.02 -> 62.2,
# 0.1 -> 41.1; student 61.1, teacher 90.4):
#   python tools/benchmark/quality.py --tune --tasks classification --methods cc --seeds 0 \
#       --jobs 1 --threads 1 --teacher-work-dir work_dirs/h30_rkd_tune/teachers \
#       --variant w0.02 model.blocks.feat.loss_weight=0.02   (--variant w0.1 ...=0.1 alike)
_base_ = './_base_distill.py'

model = dict(
    blocks=dict(
        feat=dict(student='neck', teacher='neck', method=dict(type='CC', embed_dim=128),
                  loss_weight=0.02)))
