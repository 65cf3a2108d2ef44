# RKIQT on LIVE release 2 (779 images of 29 references, DMOS 0-100 flipped to quality; split by
# reference): ./rkiqt_nar-resnet50+resnet50+rednet50_civt-s_livec.py with this set's data,
# teachers and references (the training contents' own, non_aligned_refs='train', never
# a test one). Layout: data/LIVE/{refimgs, jp2k, jpeg, wn, gblur, fastfading, dmos.mat,
# refnames_all.mat}. Published numbers: README.md.
_base_ = './rkiqt_nar-resnet50+resnet50+rednet50_civt-s_livec.py'

work = 'work_dirs/rkiqt/live'
model = dict(teachers=dict(
    nar=dict(config='{{ fileDirname }}/nar-resnet50_live.py',
             checkpoint=f'{work}/teacher_nar.pth'),
    cnn=dict(config='{{ fileDirname }}/resnet50_live.py',
             checkpoint=f'{work}/teacher_cnn.pth'),
    inv=dict(config='{{ fileDirname }}/rednet50_live.py',
             checkpoint=f'{work}/teacher_inv.pth')))
student_baseline = 'configs/rkiqt/civt-s_live.py'
train_dataloader = dict(dataset=dict(
    type='mmkd.LIVEDataset', data_root='data/LIVE', non_aligned_refs='train'))
val_dataloader = dict(dataset=dict(
    type='mmkd.LIVEDataset', data_root='data/LIVE'))
test_dataloader = val_dataloader
