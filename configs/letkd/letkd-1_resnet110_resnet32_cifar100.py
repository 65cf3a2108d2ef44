# letKD-1 on CIFAR-100: resnet110 teacher -> resnet32 student (docs/methods/letkd.md). A KD layer
# (1x1 cosine conv to 4,096 templates, scale 3; BN, ReLU; 1x1 cosine conv back, scale 1;
# x + 1.0 * value) after the student's last stage (backbone.layer3, before pooling), kept at
# inference; its scores learn the teacher's soft assignment of its last-stage features
# (backbone.layer3) to 4,096 k-means centres (T 1). Loss CE + 1.0 * KL, no logit KD; recipe of
# the authors' configs (adagorgun/letKD-framework CIFAR100/*/letKD-1.py): 240 epochs, SGD
# Nesterov, momentum 0.9, wd 5e-4, batch 64, lr 0.05, x0.1 at 150/180/210, reflect padding.
# Train the teacher, then make the templates from it (configs/letkd/README.md):
#   python tools/train.py configs/cifar100/resnet110_cifar100.py
#   python tools/analysis/letkd_templates.py configs/cifar100/resnet110_cifar100.py \
#       work_dirs/resnet110_cifar100/epoch_240.pth --point backbone.layer3 --kind kmeans \
#       --num-templates 4096 --out work_dirs/letkd/resnet110_cifar100/penult.pth
_base_ = '../cifar100/resnet32_cifar100.py'

model = dict(
    _delete_=True,
    type='mmkd.Distiller',
    student={{_base_.model}},
    teacher=dict(config='{{ fileDirname }}/../cifar100/resnet110_cifar100.py',
                 checkpoint='work_dirs/resnet110_cifar100/epoch_240.pth'),
    student_inserts=dict(
        penult=dict(after='backbone.layer3',
                    module=dict(type='KDLayer', num_templates=4096))),
    blocks=dict(
        penult=dict(student='kd_inserts.penult.scores', teacher='backbone.layer3',
                    method=dict(type='LetKD',
                                templates='work_dirs/letkd/resnet110_cifar100/penult.pth'),
                    loss_weight=1.0)),
    dry_run_input_shape=(2, 3, 32, 32))
optim_wrapper = dict(optimizer=dict(nesterov=True))
train_dataloader = dict(dataset=dict(pipeline=[
    dict(type='RandomCrop', crop_size=32, padding=4, padding_mode='reflect'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]))
