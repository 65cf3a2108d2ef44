# TAKD (Mirzadeh et al., AAAI 2020), stage 2 of 2: the teacher assistant distilled in stage 1
# (WRN-16-2, exported to a plain checkpoint) -> the digits student (ResNet-18, 1/16 width). The
# student and its KD block are plain KD's (./kd_resnet34-wide_resnet18-tiny_digits.py: tau 4,
# weight 1); only the teacher changes: the assistant's own plain config, loaded strictly from
# the checkpoint stage 1 exported. Run stage 1 and the export first
# (./takd-ta_resnet34-wide_wrn-16-2_digits.py has the commands; docs/methods/takd.md):
#   python tools/train.py configs/demo/digits/takd/takd_wrn-16-2_resnet18-tiny_digits.py
# A missing export fails at start-up naming the file; the un-exported distillation checkpoint
# (epoch_10.pth) fails the strict load naming its `student.*` keys.
# Grid note: tools/demo.py maps a teacher to a demo teacher by its config file, so a grid run of
# this config alone would read the WRN-16-2 trained without distillation (= ./kd-wrn_...py);
# run the chain with the commands above.
# Nothing tuned (plain KD's block as it is). The chain on the tune split, seed 0, one thread
# (docs/methods/takd.md has the commands): student alone 61.11, KD 84.44, TA 92.59, TAKD 85.19.
# Test split, 3 seeds: TAKD 90.52 +- 0.68 against KD 90.44 +- 0.89 (student 80.07 +- 3.79).
_base_ = '../kd_resnet34-wide_resnet18-tiny_digits.py'

model = dict(
    teacher=dict(
        _delete_=True,
        config='{{ fileDirname }}/../wrn-16-2_digits.py',
        checkpoint='work_dirs/takd-ta_resnet34-wide_wrn-16-2_digits/ta_exported.pth'))
