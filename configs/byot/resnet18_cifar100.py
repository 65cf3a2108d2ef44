# ResNet-18 (CIFAR stem: 3x3 conv, no max-pool; 11.2 M parameters) trained alone on CIFAR-100
# with the BYOT recipe: the baseline of the BYOT configs and the config their exported
# students load with. The recipe is that of the BYOT reimplementation MMRazor links
# (luanyunteng/pytorch-be-your-own-teacher, train.py, commit 8045079; the paper's code was not
# released): 200 epochs, batch 128, SGD lr 0.1, momentum 0.9, weight decay 5e-4, x0.1 at
# epochs 75, 130 and 180, random crop 32 (padding 4) and flip. Data, pipeline and evaluation
# are the shared CIFAR-100 recipe's (configs/cifar100/README.md).
_base_ = ['../cifar100/_base_cifar100_240e.py', 'mmpretrain::_base_/models/resnet18_cifar.py']

model = dict(head=dict(num_classes=100))

train_dataloader = dict(batch_size=128)
optim_wrapper = dict(optimizer=dict(lr=0.1))
param_scheduler = dict(milestones=[75, 130, 180])
train_cfg = dict(max_epochs=200)
auto_scale_lr = dict(base_batch_size=128)
