# The ResNet-50 baseline (./resnet50_cifar100.py), unchanged, in a distiller with no
# teacher: the BYOT config adds the exits and blocks (not runnable on its own).
_base_ = './resnet50_cifar100.py'

model = dict(
    _delete_=True,  # the base's `model` becomes the student below instead of being merged
    type='mmkd.Distiller',
    student={{_base_.model}},
    dry_run_input_shape=(2, 3, 32, 32))
