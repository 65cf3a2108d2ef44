# FSP's CIFAR-100 block, shared by configs/fsp/fsp_*_cifar100.py: the Gram matrices between the
# stem output and the three stage outputs (RepDistiller's feat[:-1], three pairs; equal channels
# on both sides of each pair), weight 1 during the first 30 epochs only (RepDistiller's FSP
# stage, train_student.py + helper/pretrain.py), no logit KD. Not runnable alone: read as
# {{_base_.fsp_model}} by the pair configs.
fsp_points = ['backbone.stem', 'backbone.layer1', 'backbone.layer2', 'backbone.layer3']
fsp_model = dict(blocks=dict(
    fsp=dict(student=fsp_points, teacher=fsp_points, method=dict(type='FSP', pool='avg'),
             loss_weight=dict(type='Step', value=1.0, milestones=[30], gamma=0.0,
                              by_epoch=True))))
