"""TeacherPath (mmkd.methods.teacher_path): a student value through frozen teacher modules,
the head-sharing mechanism CrossKD uses. Gradients reach the student value and never the
teacher; per-level module lists are indexed by the level; names fail naming the closest ones;
the teacher is not registered in the method."""
import pytest
import torch
import torch.nn as nn

from mmkd.methods.base import BaseDistillMethod
from mmkd.methods.teacher_path import TeacherPath


class Scale(nn.Module):
    def __init__(self, value):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(value)))

    def forward(self, x):
        return x * self.scale


class Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.pred = nn.Conv2d(4, 2, 1)
        self.scales = nn.ModuleList([Scale(1.0), Scale(2.0), Scale(3.0)])


class Teacher(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = Head()


def frozen_teacher(seed=0):
    torch.manual_seed(seed)
    teacher = Teacher()
    teacher.requires_grad_(False)
    return teacher.eval()


def test_path_applies_the_modules_in_order_and_indexes_levels():
    teacher = frozen_teacher()
    path = TeacherPath(['head.conv', 'head.pred', 'head.scales']).bind(teacher)
    x = torch.randn(2, 4, 5, 5)
    head = teacher.head
    for level in range(3):
        torch.testing.assert_close(path(x, level=level),
                                   head.scales[level](head.pred(head.conv(x))))
    assert len(path) == 3 and 'bound' in repr(path)
    plain = TeacherPath(['head.conv', 'head.pred']).bind(teacher)
    torch.testing.assert_close(plain(x), head.pred(head.conv(x)))  # no list: no level needed


def test_gradients_reach_the_student_value_and_never_the_teacher():
    teacher = frozen_teacher()
    path = TeacherPath(['head.conv', 'head.scales']).bind({'t': teacher})
    x = torch.randn(2, 4, 5, 5, requires_grad=True)
    path(x, level=2).pow(2).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())
    assert all(not p.requires_grad for p in path.parameters())
    # the gradient is the one of the same frozen layers applied directly
    y = x.detach().clone().requires_grad_()
    teacher.head.scales[2](teacher.head.conv(y)).pow(2).sum().backward()
    torch.testing.assert_close(x.grad, y.grad)


def test_a_method_holding_a_path_does_not_register_the_teacher():
    class Method(BaseDistillMethod):
        def __init__(self):
            super().__init__()
            self.path = TeacherPath(['head.conv'])

        def bind_teachers(self, teachers):
            self.path.bind(teachers)

    teacher = frozen_teacher()
    method = Method()
    method.bind_teachers({'teacher': teacher})
    assert list(method.parameters()) == [] and method.state_dict() == {}
    # a checkpoint loaded into the teacher later is what the path runs
    with torch.no_grad():
        teacher.head.conv.weight.zero_()
        teacher.head.conv.bias.fill_(1.0)
    assert torch.equal(method.path(torch.randn(1, 4, 3, 3)), torch.ones(1, 4, 3, 3))


def test_errors_name_the_module_the_level_and_the_teacher():
    teacher = frozen_teacher()
    with pytest.raises(KeyError, match=r"'head\.conv2'.*Closest names.*'head\.conv'"):
        TeacherPath(['head.conv2']).bind(teacher)
    path = TeacherPath(['head.scales']).bind(teacher)
    with pytest.raises(IndexError, match=r'level=0\.\.2 \(got level=None\)'):
        path(torch.randn(1, 4, 3, 3))
    with pytest.raises(IndexError, match='got level=3'):
        path(torch.randn(1, 4, 3, 3), level=3)
    with pytest.raises(RuntimeError, match='not bound'):
        TeacherPath(['head.conv'])(torch.randn(1, 4, 3, 3))
    with pytest.raises(TypeError, match='list of module names'):
        TeacherPath('head.conv')
    with pytest.raises(ValueError, match='several teachers'):
        TeacherPath(['head.conv']).bind({'a': teacher, 'b': frozen_teacher(1)})
    TeacherPath(['head.conv'], teacher='b').bind({'a': teacher, 'b': frozen_teacher(1)})
    with pytest.raises(KeyError, match="no teacher named 'c'"):
        TeacherPath(['head.conv'], teacher='c').bind({'a': teacher})
    trainable = Teacher().eval()
    with pytest.raises(ValueError, match='trainable parameters'):
        TeacherPath(['head.conv']).bind(trainable)
    training = frozen_teacher().train()
    with pytest.raises(ValueError, match='training mode'):
        TeacherPath(['head.conv']).bind(training)
