# TAKD (Mirzadeh et al., AAAI 2020) on CIFAR-100, stage 2 of 2: the resnet20 teacher assistant
# distilled in stage 1 (./takd-ta_resnet110_resnet20_cifar100.py), exported to a plain
# checkpoint, teaches the resnet8 student. Stage 1's config with two changes: the student is
# resnet8 (./resnet8_cifar100.py's network), the teacher is resnet20's own plain config loaded
# strictly from the export. Same loss (CE x 0.1 + KD x 0.9 at T = 4) and recipe (240 epochs).
# Run stage 1 and the export first (README.md has the commands in order):
#   python tools/train.py configs/takd/takd_resnet20_resnet8_cifar100.py
# -> work_dirs/takd_resnet20_resnet8_cifar100/epoch_240.pth; the resnet8 alone:
#   python tools/model_converters/extract_student.py \
#       work_dirs/takd_resnet20_resnet8_cifar100/epoch_240.pth resnet8_takd.pth
#   python tools/test.py configs/takd/resnet8_cifar100.py resnet8_takd.pth
_base_ = './takd-ta_resnet110_resnet20_cifar100.py'

model = dict(
    student=dict(backbone=dict(depth=8)),
    teacher=dict(_delete_=True, config='{{ fileDirname }}/../cifar100/resnet20_cifar100.py',
                 checkpoint='work_dirs/takd-ta_resnet110_resnet20_cifar100/ta_exported.pth'))
