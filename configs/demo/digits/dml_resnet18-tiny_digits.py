# Deep mutual learning (DML; Zhang, Xiang, Hospedales, Lu, "Deep Mutual Learning", CVPR 2018) on
# the digits: the resnet18-tiny student and a second resnet18-tiny, `peer`, learn together from
# scratch. No pre-trained teacher: each network learns from the labels and from the other's
# current predictions, DML's eq. (2) and (3), for each network k:
#     L_k = CE(p_k, y) + KL(p_other || p_k),   p = softmax(logits), the other's p detached.
# The peer is a trainable teacher (docs/methods/online_distillation.md): a submodule with its own
# optimiser (mmkd.DistillerOptimWrapperConstructor, the same SGD as the student, as in the paper:
# both networks are optimised alike), saved in every checkpoint and resumed; `tools/test.py
# --teacher peer` tests it and `extract_student.py --model peer` exports it alone.
# KL at temperature 1 (the paper has none), weight 1 (the paper's sum): no hyperparameter was
# tuned, so none was chosen on the tune split.
_base_ = './resnet18-tiny_digits.py'

model = dict(
    _delete_=True,  # the base's `model` becomes the student below instead of being merged
    type='mmkd.Distiller',
    student={{_base_.model}},
    teachers=dict(peer=dict(model={{_base_.model}}, checkpoint=None, trainable=True)),
    blocks=dict(
        # the student learns from the peer's predictions ...
        from_peer=dict(student='head.fc', teacher='peer:head.fc',
                       method=dict(type='LogitKD', tau=1.0)),
        # ... and the peer from the student's (the block's learner is the peer)
        to_peer=dict(student='peer:head.fc', teacher='self:head.fc',
                     method=dict(type='LogitKD', tau=1.0))),
    dry_run_input_shape=(2, 3, 16, 16))

optim_wrapper = dict(
    _delete_=True,
    constructor='mmkd.DistillerOptimWrapperConstructor',
    student={{_base_.optim_wrapper}},
    peer={{_base_.optim_wrapper}})
