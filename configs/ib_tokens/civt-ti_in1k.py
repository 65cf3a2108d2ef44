# CivT-Ti: the CivT-S student of ./civt-s_in1k.py at DeiT-Tiny's width (192, 3 heads), same
# stems, tokens, heads and recipe (the authors' code builds only the Small one; Ti is the same
# class at deit-tiny's arguments, as in their timm factory functions).
_base_ = './civt-s_in1k.py'

embed_dims = 192
model = dict(backbone=dict(arch='deit-tiny'), head=dict(in_channels=embed_dims))
