# RTK on CIFAR-100: wrn-40-2 teacher -> wrn-16-2 student, every residual block's feature of
# both networks as candidates (18 teacher, 6 student), linked by attention. A block's feature
# is the AFD authors': relu(BN(block output)), BN = the next block's bn1 (recorded as that
# block's `preact`) or, after the last block, the final BN (`final_norm`); matches='1:' skips
# layer1.0.preact (the activated stem). Loss as in the AFD authors' code:
# CE + 0.9 * KD (T = 4) + 200 * attention loss; 240 epochs, SGD lr 0.05, batch 64.
# Train the teacher first (no public OpenMMLab checkpoint for these CIFAR models):
#   python tools/train.py configs/cifar100/wrn-40-2_cifar100.py    # -> work_dirs/wrn-40-2_cifar100/
_base_ = '../cifar100/wrn-16-2_cifar100.py'

WRN_BLOCK_FEATURES = [dict(module='backbone.layer*.*.preact', matches='1:'),
                      'backbone.final_norm']

model = dict(
    _delete_=True,
    type='mmkd.Distiller',
    student={{_base_.model}},
    teacher=dict(config='{{ fileDirname }}/../cifar100/wrn-40-2_cifar100.py',
                 checkpoint='work_dirs/wrn-40-2_cifar100/epoch_240.pth'),
    blocks=dict(
        blocks=dict(student=WRN_BLOCK_FEATURES, teacher=WRN_BLOCK_FEATURES,
                    method=dict(type='RTK', selection='topk', num_keys=None, qk_dim=128),
                    loss_weight=200.0),
        logits=dict(student='head.fc', teacher='head.fc',
                    method=dict(type='LogitKD', tau=4.0), loss_weight=0.9)),
    dry_run_input_shape=(2, 3, 32, 32))
