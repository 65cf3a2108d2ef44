# RKIQT's inductive-bias regularisation alone: the conv token's quality head regresses the CNN
# teacher's prediction, the inv token's the involution teacher's (L1); the class token's head
# learns the quality labels, as the authors' class token.
_base_ = './_base_distill.py'

model = dict(
    student=dict(head=dict(loss_weights=dict(_delete_=True, cls=1.0))),
    teachers=dict(cnn={{_base_.cnn_teacher}}, inv={{_base_.inv_teacher}}),
    blocks={{_base_.ibt_blocks}})
