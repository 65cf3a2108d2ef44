# AFD on CIFAR-100: resnet110 teacher -> resnet20 student, residual blocks of both networks as
# candidates, linked by attention. As in the AFD authors' code (utils.py LAYER['resnet110'] =
# arange(2, 55, 2) over [stem] + block outputs), the teacher gives every second block, counted
# over all 54 blocks together: the 2nd, 4th, ..., 54th (matches='1::2', 27 features); the student
# gives all 9 blocks of resnet20, as the authors' LAYER['resnet20'].
# Loss as in the AFD authors' code: CE + 0.9 * KD (T = 4) + 200 * attention loss; 240 epochs,
# SGD lr 0.05, batch 64.
# Train the teacher first (no public OpenMMLab checkpoint for these CIFAR models):
#   python tools/train.py configs/cifar100/resnet110_cifar100.py  # -> work_dirs/resnet110_cifar100/
_base_ = '../cifar100/resnet20_cifar100.py'

model = dict(
    _delete_=True,
    type='mmkd.Distiller',
    student={{_base_.model}},
    teacher=dict(config='{{ fileDirname }}/../cifar100/resnet110_cifar100.py',
                 checkpoint='work_dirs/resnet110_cifar100/epoch_240.pth'),
    blocks=dict(
        blocks=dict(student='backbone.layer*.*',
                    teacher=dict(module='backbone.layer*.*', matches='1::2'),
                    method=dict(type='AFD', qk_dim=128), loss_weight=200.0),
        logits=dict(student='head.fc', teacher='head.fc',
                    method=dict(type='LogitKD', tau=4.0), loss_weight=0.9)),
    dry_run_input_shape=(2, 3, 32, 32))
