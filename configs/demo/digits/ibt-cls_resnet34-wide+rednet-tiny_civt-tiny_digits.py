# (d) of docs/methods/ib_tokens.md: (c) tested on the class head alone. Training is (c)'s to
# the bit (the test rule does not enter the loss), so the same seed gives the same weights and
# only the prediction differs: the class token's logits instead of the mean of three heads.
_base_ = './ibt_resnet34-wide+rednet-tiny_civt-tiny_digits.py'

# (_delete_: the base's value is None, which a dict cannot be merged into.)
model = dict(student=dict(head=dict(predict_weights=dict(_delete_=True, cls=1.0))))
