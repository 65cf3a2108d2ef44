# Inductive-bias-token distillation (Co-advise / CivT, Ren et al., CVPR 2022) on ImageNet, the
# authors' setting (OliverRensu/co-advise main.py): the CivT-S student of ./civt-s_in1k.py
# (conv + involution stems, tokens [cls, conv, inv, patches], a head per token) learns from two
# frozen teachers of different inductive biases, each into its own token's head:
#   student: label-smoothed CE with the Mixup / CutMix targets on the CLASS head only;
#   conv:    KL(RegNetY-4GF || conv head) at T = 1 ('batchmean', x T^2), weight 1;
#   inv:     KL(RedNet-101 || inv head) at T = 1, weight 1.
# Both teachers see the student's (mixed) batch, in eval mode, without gradients. The test
# averages the three heads. Recipe: ./civt-s_in1k.py and README.md (AMP off, as the authors;
# the involution stem runs in float32 even under AMP).
_base_ = './civt-s_in1k.py'

model = dict(
    _delete_=True,
    type='mmkd.Distiller',
    student=dict(
        type='ImageClassifier',
        backbone={{_base_.model.backbone}},
        neck=None,
        # Unlike the student-only config: the conv and inv heads get no CE, only their KD.
        head=dict(
            type='MultiTokenClsHead',
            num_classes=1000,
            in_channels={{_base_.embed_dims}},
            tokens=('cls', 'conv', 'inv'),
            loss_weights=dict(cls=1.0),
            predict_weights=None,
            loss={{_base_.model.head.loss}}),
        init_cfg={{_base_.model.init_cfg}},
        train_cfg={{_base_.model.train_cfg}}),
    teachers=dict(
        # RegNetY-4GF in timm's key layout: by default timm's own weights for "regnety_040"
        # (the file timm 1.0's pretrained_cfg 'regnety_040.ra3_in1k' names; not the authors'
        # teacher). The authors' conv_teacher.pth (Google Drive, a timm state dict under
        # 'model') loads the same way. Everything but the classifier goes into the timm
        # backbone.
        cnn=dict(config='{{ fileDirname }}/regnety-040_timm_in1k_teacher.py',
                 checkpoint='https://github.com/huggingface/pytorch-image-models/releases/'
                            'download/v0.1-tpu-weights/regnety_040_ra3-670e1166.pth',
                 revise_keys=[(r'^(?!head\.fc\.)', 'backbone.timm_model.')]),
        # RedNet-101 (78.92 top-1): the authors' mmcls checkpoint (d-li14/involution README,
        # "model" link, a file share to download by hand; backbone.* / head.fc.* load as they
        # are) or your own run of configs/rednet/rednet101_in1k.py. Co-advise's own
        # inv_teacher.pth (model.* / classifier.*) needs the two revise_keys below uncommented.
        inv=dict(config='{{ fileDirname }}/../rednet/rednet101_in1k.py',
                 checkpoint='work_dirs/teachers/rednet101_in1k.pth',
                 # revise_keys=[(r'^model\.', 'backbone.'), (r'^classifier\.', 'head.fc.')],
                 )),
    blocks=dict(
        conv=dict(student='head.heads.conv', teacher='cnn:head.fc',
                  method=dict(type='LogitKD', tau=1.0), loss_weight=1.0),
        inv=dict(student='head.heads.inv', teacher='inv:head.fc',
                 method=dict(type='LogitKD', tau=1.0), loss_weight=1.0)))
