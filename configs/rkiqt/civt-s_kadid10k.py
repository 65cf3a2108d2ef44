# ./civt-s_livec.py (the student alone of RKIQT) on KADID-10k (10,125 images of 81 references, MOS
# 1-5; split by reference). Layout: data/kadid10k/{dmos.csv, images/}.
_base_ = './civt-s_livec.py'

train_dataloader = dict(dataset=dict(
    type='mmkd.KADID10kDataset', data_root='data/kadid10k'))
val_dataloader = dict(dataset=dict(
    type='mmkd.KADID10kDataset', data_root='data/kadid10k'))
test_dataloader = val_dataloader
