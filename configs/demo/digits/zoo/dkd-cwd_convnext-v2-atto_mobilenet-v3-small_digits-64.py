# Zoo backbones on the demo data: a MobileNetV3-Small student from a ConvNeXt-V2 Atto teacher,
# both mmpretrain model configs (10 classes; the student's BN momentum raised for the short
# run), on the digits upscaled to 64x64 (./_base_digits-64.py: `img_size` feeds the dataset,
# the crop and the dry run).
#   DKD on the logits (the digits demo's alpha 1, beta 2, T 4 and warm-up) and CWD on the last
#   stage (stride 32: MobileNetV3's 576-channel layer12 and ConvNeXt's 320-channel stage 3,
#   2x2 each; a 1x1 conv aligns the channels). Weights untuned: an example that runs, not a
#   recipe (seed 0, one CPU thread: teacher 90.9, student 91.1, distilled 92.0 % top-1;
#   docs/getting_started.md, "Zoo backbones on the demo data").
# First train the teacher (its checkpoint is read from its work dir), then this:
#     python tools/train.py configs/demo/digits/zoo/convnext-v2-atto_digits-64.py
#     python tools/train.py \
#         configs/demo/digits/zoo/dkd-cwd_convnext-v2-atto_mobilenet-v3-small_digits-64.py
# and the student alone for comparison:
#     python tools/train.py configs/demo/digits/zoo/mobilenet-v3-small_digits-64.py
_base_ = './mobilenet-v3-small_digits-64.py'

model = dict(
    _delete_=True,  # the base's `model` becomes the student below instead of being merged
    type='mmkd.Distiller',
    student={{_base_.model}},
    teacher=dict(
        config='{{ fileDirname }}/convnext-v2-atto_digits-64.py',
        checkpoint='work_dirs/convnext-v2-atto_digits-64/epoch_10.pth'),
    dry_run_input_shape=(2, 3, {{_base_.img_size}}, {{_base_.img_size}}),
    blocks=dict(
        logits=dict(student='head.layers.1', teacher='head.fc',
                    method=dict(type='DKD', alpha=1.0, beta=2.0, tau=4.0),
                    loss_weight=dict(type='LinearWarmup', value=1.0, warmup=18)),
        last_stage=dict(student='backbone.layer12', teacher='backbone.stages.3',
                        method=dict(type='CWD', tau=1.0), loss_weight=5.0)))
