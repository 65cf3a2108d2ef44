# MLKD on CIFAR-100, WRN-40-2 -> WRN-16-2 (published top-1 76.63, README.md): the authors' recipe
# (./_base_mlkd_cifar100.py: temperatures, weights, lr 0.025, the weak and strong views).
#   python tools/train.py configs/cifar100/wrn-40-2_cifar100.py    # the teacher, first
_base_ = ['../cifar100/_distill_wrn-40-2_wrn-16-2.py', './_base_mlkd_cifar100.py']

train_dataloader = {{_base_.mlkd_train_dataloader}}
optim_wrapper = {{_base_.mlkd_optim_wrapper}}
model = {{_base_.mlkd_model}}
