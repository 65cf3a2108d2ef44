# BYOT self-distillation (Zhang et al., ICCV 2019; docs/methods/self_distillation.md): the
# digits student with a shallow classifier (mmkd.AuxExit: the reimplementation's bottleneck to
# layer4's 32 channels and 2x2 map, pooling, fc) after each of layer1, layer2 and layer3. No
# teacher: each exit learns from the labels ((1 - alpha) CE), from the student's own deepest
# logits (alpha T^2 KL, detached) and from its pooled features (hint, detached). The exits are
# training-only branches: skipped in predict, and tools/model_converters/extract_student.py
# drops them, so the export is the plain student of resnet18-tiny_digits.py.
# alpha 0.1, T 3, feature weight 1e-6 (summed over the batch): the defaults of the
# reimplementation MMRazor links (luanyunteng/pytorch-be-your-own-teacher, train.py); the
# deepest classifier's own CE is weighted 1 - alpha as in its loop.
# Tune split (digits, tune_fraction 0.2; 3 seeds, top-1 mean +- std): student 66.4 +- 5.0;
# BYOT alpha 0.1 71.4 +- 3.7 (kept); alpha 0.3 (CE 0.7) 63.1 +- 2.5; alpha 0.5 49.5 +- 1.5. Run
# with tools/train.py and tools/benchmark/quality.py's classification TUNE_OPTIONS, seeds 0 1 2,
# one thread each (work_dirs/h32_E/tune.sh); the alpha variants also set the CE to 1 - alpha.
# Test split, same seeds: student 80.1 +- 3.8, BYOT 85.8 +- 1.6 (docs/methods/self_distillation.md).
_base_ = './_base_self_distill.py'

alpha = 0.1
exit_module = dict(type='mmkd.AuxExit', num_classes=10, match='backbone.layer4')
byot = dict(type='BYOT', alpha=alpha, tau=3.0, feature_weight=1e-6)
deepest = ['self:head.fc', 'self:head.fc@input']  # logits and pooled features, detached
model = dict(
    student=dict(head=dict(loss=dict(loss_weight=1 - alpha))),
    student_inserts=dict(
        exit1=dict(after='backbone.layer1', mode='branch', module=exit_module),
        exit2=dict(after='backbone.layer2', mode='branch', module=exit_module),
        exit3=dict(after='backbone.layer3', mode='branch', module=exit_module)),
    blocks=dict(
        exit1=dict(student=['kd_inserts.exit1', 'kd_inserts.exit1.fc@input'],
                   teacher=deepest, method=byot),
        exit2=dict(student=['kd_inserts.exit2', 'kd_inserts.exit2.fc@input'],
                   teacher=deepest, method=byot),
        exit3=dict(student=['kd_inserts.exit3', 'kd_inserts.exit3.fc@input'],
                   teacher=deepest, method=byot)))
