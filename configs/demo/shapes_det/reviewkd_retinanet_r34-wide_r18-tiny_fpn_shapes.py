# ReviewKD (Chen et al., CVPR 2021) on every FPN level, as the authors distil RetinaNet
# (dvlab-research/ReviewKD Detection/configs/ReviewKD-RT50-RT101.yaml, model/retinanet.py:
# ABFs over the FPN outputs fed to the head, from the coarsest level to the finest, HCL against
# the teacher's FPN outputs, loss weight 1, no warm-up). The ABFs size themselves: middle width
# min(512, 64) = 64, output 128 channels per level (the teacher's). Weight 1: the authors',
# not tuned on this demo.
_base_ = './_base_distill.py'

model = dict(
    blocks=dict(
        fpn=dict(student='neck', teacher='neck', method=dict(type='ReviewKD'),
                 loss_weight=1.0)))
