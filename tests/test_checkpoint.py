"""Safe loading of MMEngine checkpoints on torch >= 2.6, and the student-only checkpoint."""
import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer, MessageHub
from mmengine.runner.checkpoint import _load_checkpoint

import mmkd  # noqa: F401  (registers the allow-list)
from mmkd.utils import UnsafeCheckpointError, extract_student_state_dict


class NotAllowed:  # a global no allow-list knows
    pass


def mmengine_like_checkpoint():
    hub = MessageHub.get_instance('mmkd_test_ckpt')
    for i in range(3):
        hub.update_scalar('train/loss', np.float64(1.0 / (i + 1)))
        hub.update_scalar('train/lr', 0.1)
    hub.update_info('iter', 3)
    return dict(meta=dict(epoch=1, iter=3, seed=np.int64(7), dataset_meta=dict(classes=('a', 'b'))),
                state_dict={'w': torch.ones(2)},
                message_hub=hub.state_dict())


def test_mmengine_checkpoint_loads_with_weights_only(tmp_path):
    path = tmp_path / 'ckpt.pth'
    torch.save(mmengine_like_checkpoint(), path)
    ckpt = torch.load(path, weights_only=True)  # torch's own safe loader accepts it now
    assert isinstance(ckpt['message_hub']['log_scalars']['train/loss'], HistoryBuffer)
    ckpt = _load_checkpoint(str(path), map_location='cpu')  # MMEngine's path (resume)
    assert ckpt['meta']['iter'] == 3
    hub = MessageHub.get_instance('mmkd_test_ckpt_restored')
    hub.load_state_dict(ckpt['message_hub'])
    assert hub.get_scalar('train/loss').current() == pytest.approx(1 / 3)


def test_unknown_global_is_still_refused_with_a_clear_error(tmp_path):
    path = tmp_path / 'evil.pth'
    torch.save(dict(state_dict={'w': torch.ones(1)}, payload=NotAllowed()), path)
    with pytest.raises(UnsafeCheckpointError) as e:
        _load_checkpoint(str(path), map_location='cpu')
    assert 'NotAllowed' in str(e.value) and str(path) in str(e.value)
    with pytest.raises(FileNotFoundError):
        _load_checkpoint(str(tmp_path / 'missing.pth'), map_location='cpu')


def test_extract_student_state_dict():
    state = {'student.backbone.w': 1, 'teacher.backbone.w': 2, 'methods.fpn.connectors.0.w': 3}
    assert extract_student_state_dict(state) == {'backbone.w': 1}
    with pytest.raises(KeyError, match='student'):
        extract_student_state_dict({'backbone.w': 1})


def test_getattr_is_only_allowed_for_history_buffer_methods(tmp_path):
    class Sneaky:  # getattr on an allowed class, but not for a statistics method
        def __reduce__(self):
            return (getattr, (HistoryBuffer, '__init__'))
    path = tmp_path / 'sneaky.pth'
    torch.save({'x': Sneaky()}, path)
    with pytest.raises(UnsafeCheckpointError) as e:
        _load_checkpoint(str(path), map_location='cpu')
    # Names the lookup; allow-listing getattr itself would let any checkpoint run code.
    assert "getattr(HistoryBuffer, '__init__')" in str(e.value) and str(path) in str(e.value)
    assert 'add_safe_globals' not in str(e.value)
