import pytest
import torch
import torch.nn as nn

from mmkd.recorders import ModuleRecorder, RecordPoint, StopForward, find_module, parse_point


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.neck = nn.Conv2d(4, 6, 1)
        self.head = nn.Linear(6, 3)
        self.head_calls = 0

    def forward(self, x, data_samples=None, mode='tensor'):
        f = self.backbone(x)
        levels = (self.neck(f), self.neck(f[..., ::2, ::2]))  # a shared module, called twice
        self.head_calls += 1
        return self.head(levels[0].mean((2, 3)))


def test_parse_point_forms():
    assert parse_point('neck') == RecordPoint('neck', 'output', None)
    assert parse_point('neck[2]') == RecordPoint('neck', 'output', 2)
    assert parse_point('head.fc@input') == RecordPoint('head.fc', 'input', None)
    assert parse_point(dict(module='a.b', source='input', index=-1)) == RecordPoint('a.b', 'input', -1)
    with pytest.raises(ValueError, match='valid keys'):
        parse_point(dict(module='a', where='input'))
    with pytest.raises(ValueError, match='source'):
        parse_point(dict(module='a', source='middle'))


def test_unknown_module_lists_closest_names():
    with pytest.raises(KeyError) as e:
        find_module(Toy(), 'backbone.1x', 'student')
    msg = str(e.value)
    assert "'backbone.1x'" in msg and 'student' in msg and 'backbone.1' in msg
    with pytest.raises(KeyError, match='Top-level modules'):
        ModuleRecorder(Toy(), [parse_point('nek')], 'teacher')


def test_records_output_input_and_repeated_calls():
    model = Toy()
    x = torch.randn(2, 3, 8, 8)
    rec = ModuleRecorder(model, [parse_point('backbone'), parse_point('head@input'),
                                 parse_point('neck')])
    rec.start()
    out = model(x)
    rec.finish()
    feat = model.backbone(x)
    torch.testing.assert_close(rec.get(parse_point('backbone')), feat)
    assert rec.get(parse_point('head@input')).shape == (2, 6)
    levels = rec.get(parse_point('neck'))  # shared module -> tuple of its calls
    assert isinstance(levels, tuple) and [t.shape[-1] for t in levels] == [8, 4]
    assert out.shape == (2, 3)


def test_index_into_tuple_output_and_errors():
    class TupleOut(nn.Module):
        def __init__(self):
            super().__init__()
            self.m = nn.Identity()

        def forward(self, x):
            return self.m((x, x * 2))
    model = TupleOut()
    rec = ModuleRecorder(model, [parse_point('m[1]')])
    rec.start()
    model(torch.ones(1))
    rec.finish()
    assert rec.get(parse_point('m[1]')).item() == 2
    bad = ModuleRecorder(model, [parse_point('m[5]')])
    bad.start()
    with pytest.raises(IndexError, match='out of range'):
        model(torch.ones(1))


def test_stop_after_skips_the_rest_of_the_forward():
    model = Toy()
    rec = ModuleRecorder(model, [parse_point('neck')])
    rec.stop_after(parse_point('neck'), 2)  # the second call of the shared neck
    rec.start()
    with pytest.raises(StopForward):
        model(torch.randn(1, 3, 8, 8))
    rec.finish()
    assert model.head_calls == 0
    assert len(rec.get(parse_point('neck'))) == 2


def test_disabled_recorder_records_nothing_and_missing_point_is_an_error():
    model = Toy()
    rec = ModuleRecorder(model, [parse_point('neck')])
    model(torch.randn(1, 3, 8, 8))
    assert rec.data == {}
    rec.start()
    with pytest.raises(RuntimeError, match='did not run'):
        rec.finish()
    rec.remove()
    assert not model.neck._forward_hooks
