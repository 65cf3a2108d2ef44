# (c) of docs/methods/ib_tokens.md: inductive-bias tokens (Co-advise / CivT, Ren et al., CVPR
# 2022, at demo size). The CivT student (civt-tiny_digits.py: conv + involution stems, tokens
# [cls, conv, inv, patches]) learns from two frozen teachers of different inductive biases:
#   cls head:  cross-entropy (the student's own loss);
#   conv head: KL(CNN teacher || conv head) at T = 1, weight 1 (ResNet-34, quarter width);
#   inv head:  KL(involution teacher || inv head) at T = 1, weight 1 (RedNet-26, quarter).
# One LogitKD block per teacher and token, as the authors' loss (main.py train_one_epoch).
# The test averages the three heads (the authors' rule); ibt-cls_* tests the class head alone.
_base_ = './civt-tiny_digits.py'

model = dict(
    _delete_=True,
    type='mmkd.Distiller',
    student=dict(
        type='ImageClassifier',
        backbone={{_base_.model.backbone}},
        neck=None,
        # The conv and inv heads get no cross-entropy: only their teachers' KL (authors).
        head=dict(type='MultiTokenClsHead', num_classes=10, in_channels=32,
                  tokens=('cls', 'conv', 'inv'), loss_weights=dict(cls=1.0),
                  predict_weights=None)),
    teachers=dict(
        cnn=dict(config='{{ fileDirname }}/resnet34-wide_digits.py',
                 checkpoint='work_dirs/demo/digits/teacher.pth'),
        inv=dict(config='{{ fileDirname }}/rednet-tiny_digits.py',
                 checkpoint='work_dirs/demo/digits/teacher_inv.pth')),
    blocks=dict(
        conv=dict(student='head.heads.conv', teacher='cnn:head.fc',
                  method=dict(type='LogitKD', tau=1.0), loss_weight=1.0),
        inv=dict(student='head.heads.inv', teacher='inv:head.fc',
                 method=dict(type='LogitKD', tau=1.0), loss_weight=1.0)),
    dry_run_input_shape=(2, 3, 16, 16))
# Read by tools/demo.py and tools/benchmark/quality.py: the student trained alone.
student_baseline = 'configs/demo/digits/civt-tiny_digits.py'
