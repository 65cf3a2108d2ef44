# RKIQT's no-reference student on LIVEC, trained alone (the baseline): the inductive-bias-token
# ViT-S (CivT-S of ../ib_tokens/civt-s_in1k.py: conv + involution stems, tokens [cls, conv,
# inv, 196 patches]) with one quality head per token (QualityRegressionHead, L1); alone, each
# head takes a third of the loss and the test averages the three. Initialise it from an
# ImageNet CivT-S (`civt_s_in1k` below: e.g. the student exported by
# tools/model_converters/extract_student.py from ../ib_tokens/civt-s_regnety-040_rednet-101_in1k.py;
# RKIQT starts from an ImageNet ViT-S). Data and recipe: ./resnet50_livec.py.
_base_ = './resnet50_livec.py'

civt_s_in1k = 'work_dirs/civt-s_regnety-040_rednet-101_in1k/student.pth'
embed_dims = 384
model = dict(
    _delete_=True,
    type='ImageClassifier',
    backbone=dict(
        type='StemTokenViT', arch='deit-small', img_size=224,
        stems=[dict(name='conv', type='ConvPatchStem', channels=64, first_kernel=7,
                    first_stride=2, num_convs=2, patch_size=8),
               dict(name='inv', type='InvolutionPatchStem', channels=64, first_stride=2,
                    patch_size=8, force_fp32=True)],
        tokens=[dict(name='cls', type='learned'),
                dict(name='conv', type='mean', stem='conv'),
                dict(name='inv', type='mean', stem='inv')],
        # Drop path 0.1 (ours: DeiT-S fine-tuning's; Co-advise's ImageNet run passes 0).
        out_type='extra_tokens', drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', prefix='backbone', checkpoint=civt_s_in1k)),
    neck=None,
    head=dict(type='QualityRegressionHead', in_channels=embed_dims, loss='l1',
              tokens=('cls', 'conv', 'inv'),
              loss_weights=dict(cls=1 / 3, conv=1 / 3, inv=1 / 3)))

optim_wrapper = dict(
    _delete_=True,
    optimizer=dict(type='AdamW', lr=2e-4, weight_decay=1e-2),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0,
                       custom_keys={'.cls_token': dict(decay_mult=0.0),
                                    '.pos_embed': dict(decay_mult=0.0)}))
