# ./resnet50_livec.py (the CNN teacher of RKIQT) on LIVE release 2 (779 images of 29 references,
# DMOS 0-100 flipped to quality; split by reference). Layout: data/LIVE/{refimgs, jp2k, jpeg, wn,
# gblur, fastfading, dmos.mat, refnames_all.mat}.
_base_ = './resnet50_livec.py'

train_dataloader = dict(dataset=dict(
    type='mmkd.LIVEDataset', data_root='data/LIVE'))
val_dataloader = dict(dataset=dict(
    type='mmkd.LIVEDataset', data_root='data/LIVE'))
test_dataloader = val_dataloader
