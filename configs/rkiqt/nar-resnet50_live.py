# ./nar-resnet50_livec.py (the non-aligned-reference teacher of RKIQT) on LIVE release 2 (779
# images of 29 references, DMOS 0-100 flipped to quality; split by reference). Layout:
# data/LIVE/{refimgs, jp2k, jpeg, wn, gblur, fastfading, dmos.mat, refnames_all.mat}. References:
# the training contents' own references (non_aligned_refs='train', never a test one).
_base_ = './nar-resnet50_livec.py'

train_dataloader = dict(dataset=dict(
    type='mmkd.LIVEDataset', data_root='data/LIVE', non_aligned_refs='train'))
val_dataloader = dict(dataset=dict(
    type='mmkd.LIVEDataset', data_root='data/LIVE', non_aligned_refs='train'))
test_dataloader = val_dataloader
