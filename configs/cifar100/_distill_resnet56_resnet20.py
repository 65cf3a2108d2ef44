# The resnet56 -> resnet20 pair of the CIFAR-100 KD benchmarks, for the baselines' configs
# (configs/dkd, rld, logit_std, at, fitnet): the student file's model and recipe, the teacher
# trained here with the same recipe (no public OpenMMLab checkpoint):
#   python tools/train.py configs/cifar100/resnet56_cifar100.py
# Not runnable alone: a method config inherits it and adds `model.blocks`.
_base_ = './resnet20_cifar100.py'

model = dict(
    _delete_=True,
    type='mmkd.Distiller',
    student={{_base_.model}},
    teacher=dict(config='{{ fileDirname }}/resnet56_cifar100.py',
                 checkpoint='work_dirs/resnet56_cifar100/epoch_240.pth'),
    dry_run_input_shape=(2, 3, 32, 32))
