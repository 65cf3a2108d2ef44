# FT (Kim et al., NeurIPS 2018): factor transfer on the last stage's output (RepDistiller's
# feat[-2]); the paraphraser (rate 0.5, no BN) is trained on the teacher's map by
# reconstruction for the first 2 of the 10 epochs (RepDistiller: 30 init epochs before 240),
# then frozen while the translator and the student match its normalised factors (p1 2, p2 1,
# RepDistiller's attention factor); the student's cross-entropy on throughout
# (mmkd/methods/ft.py). Factor weight 20, not the authors' 200, chosen on the tune split (seed 0,
# top-1: factor weight 2000 -> 13.0, 200 -> 27.4, 20 -> 68.2; student 61.1, teacher 90.4):
#   python tools/benchmark/quality.py --tune --tasks classification --methods ft --seeds 0 \
#       --variant f200 model.blocks.ft.method.factor_weight=200.0 --variant f20 ...=20.0 \
#       --variant f2000 ...=2000.0
_base_ = './_base_distill.py'

model = dict(
    blocks=dict(
        ft=dict(student='backbone.layer4', teacher='backbone.layer4',
                method=dict(type='FT', paraphraser_stage=2, by_epoch=True, factor_weight=20.0),
                loss_weight=1.0)))
