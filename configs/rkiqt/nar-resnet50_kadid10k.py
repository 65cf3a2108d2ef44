# ./nar-resnet50_livec.py (the non-aligned-reference teacher of RKIQT) on KADID-10k (10,125 images
# of 81 references, MOS 1-5; split by reference). Layout: data/kadid10k/{dmos.csv, images/}.
# References: the training contents' own references (non_aligned_refs='train', never a test one).
_base_ = './nar-resnet50_livec.py'

train_dataloader = dict(dataset=dict(
    type='mmkd.KADID10kDataset', data_root='data/kadid10k', non_aligned_refs='train'))
val_dataloader = dict(dataset=dict(
    type='mmkd.KADID10kDataset', data_root='data/kadid10k', non_aligned_refs='train'))
test_dataloader = val_dataloader
