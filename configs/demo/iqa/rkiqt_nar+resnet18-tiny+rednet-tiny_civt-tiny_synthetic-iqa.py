# RKIQT in full ("Less is More", arXiv 2312.00591) at demo size: the CivT-tiny no-reference
# student with both the masked quality-contrastive distillation from the reference teacher and
# the inductive-bias regularisation from the CNN and involution teachers.
_base_ = './_base_distill.py'

model = dict(
    student=dict(head=dict(loss_weights=dict(_delete_=True, cls=1.0))),
    teachers=dict(nar={{_base_.nar_teacher}}, cnn={{_base_.cnn_teacher}},
                  inv={{_base_.inv_teacher}}),
    blocks=dict(mcd={{_base_.mcd_block}}, conv={{_base_.ibt_blocks.conv}},
                inv={{_base_.ibt_blocks.inv}}))
train_dataloader = dict(dataset=dict(non_aligned_refs='train',
                                     pipeline={{_base_.nar_train_pipeline}}))
