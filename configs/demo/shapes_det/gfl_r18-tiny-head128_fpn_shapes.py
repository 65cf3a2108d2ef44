# The GFL student baseline (./gfl_r18-tiny_fpn_shapes.py) with its head at the GFL teacher's
# width (feat_channels 128): the student of crosskd_gfl_r34-wide_r18-tiny_fpn_shapes.py, whose
# crossing feeds student head features into the teacher's head and so needs equal widths.
_base_ = './gfl_r18-tiny_fpn_shapes.py'
model = dict(bbox_head=dict(feat_channels=128))
