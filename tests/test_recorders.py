import pytest
import torch
import torch.nn as nn

from mmkd.recorders import (ModuleRecorder, RecordPoint, StopForward, expand_points, find_module,
                            parse_point)


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


class Stages(nn.Module):
    """backbone.layer{1,2,3}.{0..n-1}: the module tree of the CIFAR ResNets, without the cost."""

    def __init__(self, n=18):
        super().__init__()
        self.backbone = nn.Module()
        for i in (1, 2, 3):
            self.backbone.add_module(f'layer{i}', nn.Sequential(*[nn.Identity()
                                                                 for _ in range(n)]))
        self.neck = nn.Identity()


def modules_of(points):
    return [parse_point(p).module for p in points]


def test_matches_keeps_every_second_match_over_all_stages():
    model = Stages(18)  # ResNet-110's 3 x 18 blocks
    points = expand_points(dict(module='backbone.layer*.*', matches='1::2'), model)
    # Global odd indices; with 18 (even) blocks a stage these are each stage's blocks 1, 3, .. 17.
    assert modules_of(points) == [f'backbone.layer{i}.{j}' for i in (1, 2, 3)
                                  for j in range(1, 18, 2)]
    assert len(points) == 27
    # Over all matches together, not per stage: with 3 blocks a stage, 1::2 crosses stages.
    assert modules_of(expand_points(dict(module='backbone.layer*.*', matches='1::2'),
                                    Stages(3))) == [
        'backbone.layer1.1', 'backbone.layer2.0', 'backbone.layer2.2', 'backbone.layer3.1']
    small = Stages(2)
    for matches, expected in (('1:', ['layer1.1', 'layer2.0', 'layer2.1', 'layer3.0',
                                      'layer3.1']),
                              (':2', ['layer1.0', 'layer1.1']),
                              ('-2:', ['layer3.0', 'layer3.1']),
                              ('::-3', ['layer3.1', 'layer2.0']),
                              (' 0 : 5 : 4 ', ['layer1.0', 'layer3.0'])):
        got = expand_points(dict(module='backbone.layer*.*', matches=matches), small)
        assert modules_of(got) == ['backbone.' + e for e in expected], matches


def test_matches_keeps_source_and_index_and_mixes_with_string_points():
    model = Stages(2)
    points = expand_points(['neck[0]', dict(module='backbone.layer?.*', matches='::3',
                                            source='input', index=1), 'backbone@input'], model)
    assert points == ['neck[0]', RecordPoint('backbone.layer1.0', 'input', 1),
                      RecordPoint('backbone.layer2.1', 'input', 1), 'backbone@input']
    assert parse_point(points[0]) == RecordPoint('neck', 'output', 0)
    assert parse_point(points[-1]) == RecordPoint('backbone', 'input', None)
    # Without a wildcard or `matches` the spec is returned as it was.
    assert expand_points('neck[0]', model) == 'neck[0]'
    # A dict with a wildcard but no `matches` takes every match, as the string does.
    assert expand_points(dict(module='backbone.layer3.*'), model) == expand_points(
        'backbone.layer3.*', model)


@pytest.mark.parametrize('matches,message', [
    ('every 2', 'is not a slice'),
    ('1:2:3:4', 'is not a slice'),
    ('1.5:', 'is not a slice'),
    (2, 'is not a slice'),
    ('::0', 'step 0'),
    ('100:', 'keeps none of the 54 modules'),
])
def test_bad_matches_name_the_point_and_the_number_of_matches(matches, message):
    spec = dict(module='backbone.layer*.*', matches=matches)
    with pytest.raises(ValueError, match=message) as e:
        expand_points(spec, Stages(18), 'teacher')
    assert repr(spec) in str(e.value) and '54 modules' in str(e.value)


def test_matches_is_only_valid_where_patterns_are_expanded():
    with pytest.raises(ValueError, match='expand_points'):
        parse_point(dict(module='backbone.layer*.*', matches='1::2'))
    with pytest.raises(ValueError, match="matches='start:stop:step'"):
        parse_point('backbone.layer*.*[1::2]')  # brackets index the output: no slice there
    with pytest.raises(ValueError, match='valid keys'):
        expand_points(dict(module='backbone.layer*.*', matches='1:', where='input'), Stages(2))
    with pytest.raises(KeyError, match='matches no module'):
        expand_points(dict(module='backbone.stage*.*', matches='1:'), Stages(2))
