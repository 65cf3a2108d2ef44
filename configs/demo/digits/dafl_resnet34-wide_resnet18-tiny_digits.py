# DAFL (Chen et al., ICCV 2019), data-free: the student never sees a digit. A generator makes
# its training images; the teacher (trained on the real digits by tools/demo.py) rates them:
# the generator learns DAFL's one-hot + activation + information-entropy terms on the teacher,
# the student learns the teacher's predictions on the generated images (KL, tau 1). Validation
# and test are the real digits test split, through the student alone (tools/test.py unchanged).
# See docs/methods/data_free.md.
#
# Settings: the authors' MNIST run (DAFL-train.py, huawei-noah/Efficient-Computing commit
# 225ddd2e): Adam for both, lr_G 0.2, lr_S 2e-3, no schedule, generator latent 100 / hidden 128,
# oh 1, a 0.1, ie 5, one joint step (= student first on shared latents, see
# mmkd/distillers/data_free.py). Smaller than theirs: batch 64 (theirs 512) and 20 epochs of
# 60 iterations (theirs 200 of 120). One choice made on the tune split (tune_fraction 0.2, the
# tune teacher work_dirs/h30_rkd_tune/teachers/digits, 5 epochs): a three-channel generator,
# 34.07, against one channel repeated to three (generator channels=1), 25.93.
# RESULT (real digits test split, top-1 %, seed 0, CPU, 2026-12-05, the teacher of tools/demo.py,
# 93.78): 31.56 after 20 epochs (every 5: 17.11, 19.11, 33.56, 31.56); 60 epochs: 30.22.
# The student trained on the real digits: 78.00 (seed 0; 80.96 +- 3.79 over seeds 0-2,
# docs/benchmarks.md); DFAD without data (dfad_*): 86.89. DAFL's generator meets its terms
# (a confident teacher, balanced classes) with images the student learns little from; see
# docs/methods/data_free.md. About 7 minutes on one thread. Command:
#   python tools/train.py configs/demo/digits/dafl_resnet34-wide_resnet18-tiny_digits.py \
#       --work-dir work_dirs/h32_D/dafl_final
_base_ = './_base_distill.py'

model = dict(
    type='mmkd.DataFreeDistiller',
    blocks=dict(
        logits=dict(student='head.fc', teacher='head.fc',
                    method=dict(type='LogitKD', tau=1.0))),  # DAFL's kdloss: KL / N, no T^2
    generator=dict(type='mmkd.DAFLGenerator', latent_dim=100, hidden_channels=128),
    generator_loss=dict(type='dafl', logits='head.fc', features='head.fc@input',
                        one_hot=1.0, activation=0.1, information_entropy=5.0),
    student_steps=1, student_first=True, latents='shared')

iters_per_epoch = 60
train_dataloader = dict(
    batch_size=64,
    # Seeds, no images (mmkd.LatentDataset): num_samples / batch_size = iterations per epoch.
    dataset=dict(_delete_=True, type='mmkd.LatentDataset', num_samples=64 * iters_per_epoch,
                 seed=0))

max_epochs = 20
optim_wrapper = dict(
    _delete_=True,
    constructor='mmkd.DistillerOptimWrapperConstructor',
    student=dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=2e-3)),
    generator=dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=0.2)))
param_scheduler = []  # DAFL's MNIST run: constant learning rates
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=5)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=max_epochs,
                                     max_keep_ckpts=1))
