# No-reference RedNet-50 on LIVEC: RKIQT's involution teacher (the inv token's). Initialise it
# from an ImageNet RedNet-50 (78.35 top-1: the authors' checkpoint, or your run of
# configs/rednet/rednet50_in1k.py; set `rednet50_in1k` below). Data and recipe:
# ./resnet50_livec.py.
_base_ = './resnet50_livec.py'

rednet50_in1k = 'work_dirs/rednet50_in1k/rednet50_in1k.pth'
model = dict(
    backbone=dict(_delete_=True, type='RedNet', depth=50,
                  init_cfg=dict(type='Pretrained', prefix='backbone',
                                checkpoint=rednet50_in1k)))
