# RKIQT on KonIQ-10k (10,073 in-the-wild images, MOS 1-5; split by image): ./rkiqt_nar-
# resnet50+resnet50+rednet50_civt-s_livec.py with this set's data, teachers and references (a
# folder of another set's pristine images, as for LIVEC (./nar-resnet50_livec.py)). Layout:
# data/koniq10k/{koniq10k_scores_and_distributions.csv, 1024x768/}. Published numbers: README.md.
_base_ = './rkiqt_nar-resnet50+resnet50+rednet50_civt-s_livec.py'

work = 'work_dirs/rkiqt/koniq10k'
model = dict(teachers=dict(
    nar=dict(config='{{ fileDirname }}/nar-resnet50_koniq10k.py',
             checkpoint=f'{work}/teacher_nar.pth'),
    cnn=dict(config='{{ fileDirname }}/resnet50_koniq10k.py',
             checkpoint=f'{work}/teacher_cnn.pth'),
    inv=dict(config='{{ fileDirname }}/rednet50_koniq10k.py',
             checkpoint=f'{work}/teacher_inv.pth')))
student_baseline = 'configs/rkiqt/civt-s_koniq10k.py'
train_dataloader = dict(dataset=dict(
    type='mmkd.KonIQ10kDataset', data_root='data/koniq10k', non_aligned_refs='data/nar_refs'))
val_dataloader = dict(dataset=dict(
    type='mmkd.KonIQ10kDataset', data_root='data/koniq10k'))
test_dataloader = val_dataloader
