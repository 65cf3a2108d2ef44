# ./civt-s_livec.py (the student alone of RKIQT) on KonIQ-10k (10,073 in-the-wild images, MOS 1-5;
# split by image). Layout: data/koniq10k/{koniq10k_scores_and_distributions.csv, 1024x768/}.
_base_ = './civt-s_livec.py'

train_dataloader = dict(dataset=dict(
    type='mmkd.KonIQ10kDataset', data_root='data/koniq10k'))
val_dataloader = dict(dataset=dict(
    type='mmkd.KonIQ10kDataset', data_root='data/koniq10k'))
test_dataloader = val_dataloader
