# ./nar-resnet50_livec.py (the non-aligned-reference teacher of RKIQT) on KonIQ-10k (10,073 in-
# the-wild images, MOS 1-5; split by image). Layout:
# data/koniq10k/{koniq10k_scores_and_distributions.csv, 1024x768/}. References: a folder of
# another set's pristine images, as for LIVEC (./nar-resnet50_livec.py).
_base_ = './nar-resnet50_livec.py'

train_dataloader = dict(dataset=dict(
    type='mmkd.KonIQ10kDataset', data_root='data/koniq10k', non_aligned_refs='data/nar_refs'))
val_dataloader = dict(dataset=dict(
    type='mmkd.KonIQ10kDataset', data_root='data/koniq10k', non_aligned_refs='data/nar_refs'))
test_dataloader = val_dataloader
