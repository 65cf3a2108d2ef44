# A first stage of 30 epochs before the recipe's 240 (RepDistiller's --init_epochs 30, before its
# 240-epoch run: FSP, AB, FT), shared by those methods' CIFAR-100 configs: one run of 270 epochs
# whose learning-rate milestones move by 30 (180, 210, 240), and the block weight of a stage
# method, on in epochs 1..30 and off after (a Step schedule; the student's cross-entropy stays
# on, see docs/methods/anchor_methods.md). Not runnable alone: a config lists it after its
# distiller base and reads the values below as {{_base_.init_stage_*}} (two bases may not set
# the same key).
init_stage_weight = dict(type='Step', value=1.0, milestones=[30], gamma=0.0, by_epoch=True)
init_stage_train_cfg = dict(max_epochs=270)
init_stage_param_scheduler = dict(type='MultiStepLR', by_epoch=True,
                                  milestones=[180, 210, 240], gamma=0.1)
