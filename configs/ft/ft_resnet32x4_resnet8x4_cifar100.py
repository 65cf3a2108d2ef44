# FT on CIFAR-100, resnet32x4 -> resnet8x4: the authors' recipe (./_base_ft_cifar100.py: the paraphraser's
# 30-epoch stage, then the factor loss; 270 epochs in all).
#   python tools/train.py configs/cifar100/resnet32x4_cifar100.py    # the teacher, first
_base_ = ['../cifar100/_distill_resnet32x4_resnet8x4.py', './_base_ft_cifar100.py',
          '../cifar100/_base_init_stage_270e.py']

model = {{_base_.ft_model}}
optim_wrapper = {{_base_.ft_optim_wrapper}}
train_cfg = {{_base_.init_stage_train_cfg}}
param_scheduler = {{_base_.init_stage_param_scheduler}}
