# MLKD on CIFAR-100, ResNet-56 -> ResNet-20 (published top-1 72.19, README.md): the authors' recipe
# (./_base_mlkd_cifar100.py: temperatures, weights, lr 0.025, the weak and strong views).
#   python tools/train.py configs/cifar100/resnet56_cifar100.py    # the teacher, first
_base_ = ['../cifar100/_distill_resnet56_resnet20.py', './_base_mlkd_cifar100.py']

train_dataloader = {{_base_.mlkd_train_dataloader}}
optim_wrapper = {{_base_.mlkd_optim_wrapper}}
model = {{_base_.mlkd_model}}
