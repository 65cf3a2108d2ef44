# The inductive-bias-token ViT (Co-advise's CivT at demo size) trained alone: the control that
# separates its architecture from its teachers. Same width, depth and recipe as the plain ViT
# (vit-tiny_digits.py), but the patch tokens are the SUM of a conv stem's and an involution
# stem's 4x4-grid tokens, and the sequence is [cls, conv, inv, 16 patches]: conv = the mean of
# the conv stem's tokens, inv = the mean of the involution stem's (computed, not learned).
# One linear head per token; with no teacher each head takes a third of the cross-entropy (our
# choice, as the VkD student-only config), and the test averages the three heads' logits.
_base_ = './vit-tiny_digits.py'

model = dict(
    backbone=dict(
        stems=[dict(name='conv', type='ConvPatchStem', channels=16, first_kernel=3,
                    first_stride=1, num_convs=1, patch_size=4),
               dict(name='inv', type='InvolutionPatchStem', channels=32, first_stride=1,
                    patch_size=4)],
        tokens=[dict(name='cls', type='learned'),
                dict(name='conv', type='mean', stem='conv'),
                dict(name='inv', type='mean', stem='inv')]),
    head=dict(tokens=('cls', 'conv', 'inv'),
              loss_weights=dict(cls=1 / 3, conv=1 / 3, inv=1 / 3), predict_weights=None))
