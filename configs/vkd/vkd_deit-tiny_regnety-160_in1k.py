# VkD (Miles et al., CVPR 2024) on ImageNet, the paper's setting: RegNetY-16GF teacher (timm
# "regnety_160", the DeiT teacher, 82.9; needs `pip install timm`) -> the authors' modified
# DeiT-Tiny (paper: 78.3; 79.2 single-GPU rerun). Student, data and recipe come from
# deit-tiny-convstem_in1k.py (conv stem; tokens [cls, dist = mean of the patch embeddings,
# patches]; one head per token, averaged at test; AdamW 5e-4, no warm-up, per-iteration
# cosine to 5e-6, 300 epochs, batch 1024). The objective of roymiles/vkd engine.py:
#   student: label-smoothed CE (with Mixup / CutMix targets) on the CLASS head only;
#   feat:    mean of the student's patch tokens (final LayerNorm output, the 2 extra tokens
#            dropped) -> orthogonal projector 192 -> 3024, smooth L1 (beta 1) to the
#            teacher's globally pooled last stage standardised per sample; weight alpha = 1;
#   logits:  KL(teacher || DISTILLATION head) at T = 1 ('batchmean'), weight gamma = 1.
# The teacher sees the same Mixup / CutMix batch as the student, as in the authors' code.
# The plain mmpretrain DeiT variant (not the paper's student): vkd_deit-tiny-plain_regnety-
# 160_in1k.py.
_base_ = './deit-tiny-convstem_in1k.py'
custom_imports = dict(imports=['mmkd'], allow_failed_imports=False)

model = dict(
    _delete_=True,
    type='mmkd.Distiller',
    student=dict(
        type='ImageClassifier',
        backbone={{_base_.model.backbone}},
        neck=None,
        # Unlike the student-only config, the distillation head gets no CE: only the KD block.
        head=dict(
            type='MultiTokenClsHead',
            num_classes=1000,
            in_channels=192,
            tokens=('cls', 'dist'),
            loss_weights=dict(cls=1.0),
            predict_weights=None,  # (cls + dist) / 2 at test time
            loss={{_base_.model.head.loss}}),
        init_cfg={{_base_.model.init_cfg}},
        train_cfg={{_base_.model.train_cfg}}),
    teacher=dict(
        config='{{ fileDirname }}/regnety-160_timm_in1k_teacher.py',
        # DeiT's released teacher weights (timm's "regnety_160.deit_in1k"): timm key layout,
        # stored under 'model'; everything but the classifier goes into the timm backbone.
        checkpoint='https://dl.fbaipublicfiles.com/deit/regnety_160-a5fe301d.pth',
        revise_keys=[(r'^(?!head\.fc\.)', 'backbone.timm_model.')]),
    blocks=dict(
        feat=dict(student='backbone.ln1', teacher='neck',
                  method=dict(type='VkD', normalize='sample', pool=True, skip_tokens=2,
                              distance='smooth_l1', beta=1.0),
                  loss_weight=1.0),
        logits=dict(student='head.heads.dist', teacher='head.fc',
                    method=dict(type='LogitKD', tau=1.0), loss_weight=1.0)))
