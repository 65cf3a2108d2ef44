# RKIQT on KADID-10k (10,125 images of 81 references, MOS 1-5; split by reference): ./rkiqt_nar-
# resnet50+resnet50+rednet50_civt-s_livec.py with this set's data, teachers and references (the
# training contents' own references (non_aligned_refs='train', never a test one)). Layout:
# data/kadid10k/{dmos.csv, images/}. Published numbers: README.md.
_base_ = './rkiqt_nar-resnet50+resnet50+rednet50_civt-s_livec.py'

work = 'work_dirs/rkiqt/kadid10k'
model = dict(teachers=dict(
    nar=dict(config='{{ fileDirname }}/nar-resnet50_kadid10k.py',
             checkpoint=f'{work}/teacher_nar.pth'),
    cnn=dict(config='{{ fileDirname }}/resnet50_kadid10k.py',
             checkpoint=f'{work}/teacher_cnn.pth'),
    inv=dict(config='{{ fileDirname }}/rednet50_kadid10k.py',
             checkpoint=f'{work}/teacher_inv.pth')))
student_baseline = 'configs/rkiqt/civt-s_kadid10k.py'
train_dataloader = dict(dataset=dict(
    type='mmkd.KADID10kDataset', data_root='data/kadid10k', non_aligned_refs='train'))
val_dataloader = dict(dataset=dict(
    type='mmkd.KADID10kDataset', data_root='data/kadid10k'))
test_dataloader = val_dataloader
