# The digits teacher (resnet34-wide_digits.py) trained with label smoothing, 0.1 (Szegedy et al.
# 2016; the value Mueller, Kornblith and Hinton, "When does label smoothing help?", NeurIPS 2019,
# found to hurt distillation from the smoothed teacher): the label-smoothing-and-KD ablation
# (kd-ls-teacher_*.py). The only change: mmpretrain's LabelSmoothLoss for the cross-entropy.
_base_ = './resnet34-wide_digits.py'
model = dict(head=dict(loss=dict(_delete_=True, type='LabelSmoothLoss', label_smooth_val=0.1,
                                 loss_weight=1.0)))
