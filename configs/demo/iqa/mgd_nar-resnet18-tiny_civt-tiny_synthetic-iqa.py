# RKIQT's masked quality-contrastive distillation alone (docs/methods/rkiqt.md): the CivT-tiny
# no-reference student learns its labels and, through a masked generator (MGD), the reference
# teacher's HQ-LQ difference features. The reference reaches the teacher only.
_base_ = './_base_distill.py'

model = dict(teachers=dict(nar={{_base_.nar_teacher}}),
             blocks=dict(mcd={{_base_.mcd_block}}))
train_dataloader = dict(dataset=dict(non_aligned_refs='train',
                                     pipeline={{_base_.nar_train_pipeline}}))
