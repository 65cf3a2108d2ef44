# AB (Heo et al., AAAI 2019): activation boundaries of the four stages' pre-ReLU maps (the last
# block's bn2 output: pre-residual, since the block's final ReLU is in place), margin 1, level
# weights 1/8, 1/4, 1/2, 1 (RepDistiller's 2 ** (i - L + 1)), conv + BN connectors to the wider
# teacher; as RepDistiller, an initialisation stage: the AB term is on for the first 2 of the 10
# epochs (RepDistiller: 30 init epochs before 240) and off after, the student's cross-entropy
# on throughout (see mmkd/methods/ab.py). Block weight 5 (the schedule's value), not the
# authors' 1, chosen on the tune split (seed 0, top-1: weight 25 -> 58.2, 5 -> 69.3, 0.2 -> 60.7;
# student 61.1, teacher 90.4; the authors' 1 was not run):
#   python tools/benchmark/quality.py --tune --tasks classification --methods ab --seeds 0 \
#       --variant w5 model.blocks.ab.loss_weight.value=5.0 --variant w0.2 ...=0.2 (w25 alike)
_base_ = './_base_distill.py'

model = dict(
    blocks=dict(
        ab=dict(student=[f'backbone.layer{k}.1.bn2' for k in (1, 2, 3, 4)],
                teacher=['backbone.layer1.2.bn2', 'backbone.layer2.3.bn2',
                         'backbone.layer3.5.bn2', 'backbone.layer4.2.bn2'],
                method=dict(type='AB', margin=1.0),
                loss_weight=dict(type='Step', value=5.0, milestones=[2], gamma=0.0,
                                 by_epoch=True))))
