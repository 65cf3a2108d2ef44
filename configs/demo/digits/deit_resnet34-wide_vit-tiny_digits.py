# (b) of docs/methods/ib_tokens.md: one CNN teacher through a distillation token, DeiT-style
# (Touvron et al., ICML 2021). The plain ViT student (vit-tiny_digits.py) gets a second
# LEARNED token, `dist`, with its own head; the class head takes the cross-entropy, the
# distillation head KL(teacher || head) at T = 1 from the ResNet-34 (quarter width) teacher,
# weight 1; the test averages the two heads (DeiT's rule). DeiT prefers hard teacher labels; the
# soft KL at T = 1 here is our choice, so that (b) and (c) differ only in the tokens and the
# second teacher. Compared with its own baseline, the plain ViT (`student_baseline`).
_base_ = './vit-tiny_digits.py'

model = dict(
    _delete_=True,
    type='mmkd.Distiller',
    student=dict(
        type='ImageClassifier',
        backbone=dict(
            type='StemTokenViT', arch={{_base_.vit_arch}}, img_size=16,
            stems={{_base_.model.backbone.stems}},
            tokens=[dict(name='cls', type='learned'), dict(name='dist', type='learned')]),
        neck=None,
        head=dict(type='MultiTokenClsHead', num_classes=10, in_channels=32,
                  tokens=('cls', 'dist'), loss_weights=dict(cls=1.0), predict_weights=None)),
    teacher=dict(config='{{ fileDirname }}/resnet34-wide_digits.py',
                 checkpoint='work_dirs/demo/digits/teacher.pth'),
    blocks=dict(
        dist=dict(student='head.heads.dist', teacher='head.fc',
                  method=dict(type='LogitKD', tau=1.0), loss_weight=1.0)),
    dry_run_input_shape=(2, 3, 16, 16))
# Read by tools/demo.py and tools/benchmark/quality.py: the student trained alone.
student_baseline = 'configs/demo/digits/vit-tiny_digits.py'
