"""A frozen teacher's forward options (issue 34, item 2): ``precision`` (autocast on the
teacher's forward only), ``channels_last`` and ``compile`` (``torch.compile``, eager again
with a warning when it fails).

Tolerances: the teacher's logits under bf16 autocast within 0.1 + 5 % of the fp32 ones (bf16
keeps 8 bits of mantissa: about 3 significant digits per operation, over a 34-layer ResNet),
under fp16 within 0.02 + 1 %; channels-last changes only the memory order, so the values agree
to 1e-4 (another summation order in the convolutions). Dynamo's tracing alone (``backend=
'eager'``) runs the same operations: equal values; inductor's generated code sums in other
orders: within 1e-4.
"""
import pytest
import torch

from conftest import batch, build, digits_cfg


def recorded(distiller, inputs, samples):
    distiller.train()
    distiller.record_teachers(inputs, samples)
    t = distiller.teacher_info('teacher')
    raw = t.recorder.get(t.recorder.points[0])
    return raw, t.get(t.recorder.points[0])


@pytest.fixture(scope='module')
def plain(teacher_ckpts):
    torch.manual_seed(0)
    return build(digits_cfg(teacher_ckpts['digits'], dry_run_input_shape=(2, 3, 16, 16)))


@pytest.mark.parametrize('precision,dtype,atol,rtol', [
    ('bf16', torch.bfloat16, 0.1, 0.05), ('fp16', torch.float16, 0.02, 0.01)])
def test_precision_autocasts_the_teacher_forward_only(plain, teacher_ckpts, precision, dtype,
                                                      atol, rtol):
    teacher = dict(digits_cfg(teacher_ckpts['digits']).teacher, precision=precision)
    torch.manual_seed(0)
    d = build(digits_cfg(teacher_ckpts['digits'], teacher=teacher,
                         dry_run_input_shape=(2, 3, 16, 16)))
    assert d.teacher_info('teacher').precision == precision
    inputs, samples = batch(n=8, size=16)
    _, reference = recorded(plain, inputs, samples)
    raw, value = recorded(d, inputs, samples)
    assert raw.dtype == dtype  # the teacher computed in the lower precision...
    assert value.dtype == torch.float32  # ...and the methods get float32
    torch.testing.assert_close(value, reference, atol=atol, rtol=rtol)
    d.load_state_dict(plain.state_dict())
    losses = d(inputs, samples, mode='loss')
    assert all(v.dtype == torch.float32 for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(losses['distill.logits.loss_kd'])
    # the student is outside the teacher's autocast: its loss equals the plain distiller's
    plain_losses = plain(inputs, samples, mode='loss')
    torch.testing.assert_close(losses['student.loss'], plain_losses['student.loss'])


def test_channels_last_changes_the_layout_not_the_values(plain, teacher_ckpts):
    teacher = dict(digits_cfg(teacher_ckpts['digits']).teacher, channels_last=True)
    d = build(digits_cfg(teacher_ckpts['digits'], teacher=teacher,
                         dry_run_input_shape=(2, 3, 16, 16)))
    conv = d.teachers['teacher'].backbone.conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    inputs, samples = batch(n=8, size=16)
    _, reference = recorded(plain, inputs, samples)
    _, value = recorded(d, inputs, samples)
    torch.testing.assert_close(value, reference, atol=1e-4, rtol=1e-4)


def compiled(teacher_ckpts, options):
    teacher = dict(digits_cfg(teacher_ckpts['digits']).teacher, compile=options)
    return build(digits_cfg(teacher_ckpts['digits'], teacher=teacher,
                            dry_run_input_shape=(2, 3, 16, 16)))


def test_compile_traces_the_teacher_with_its_record_points(plain, teacher_ckpts):
    """Dynamo traces the forward with the recorder's hooks (and its early stop) inside."""
    torch._dynamo.reset()
    d = compiled(teacher_ckpts, dict(backend='eager'))
    inputs, samples = batch(n=8, size=16)
    _, reference = recorded(plain, inputs, samples)
    _, value = recorded(d, inputs, samples)
    t = d.teacher_info('teacher')
    assert t.compile == dict(backend='eager') and t._compiled is not None  # no fallback
    torch.testing.assert_close(value, reference, atol=0, rtol=0)


def test_compile_falls_back_to_eager_with_a_message(plain, teacher_ckpts, monkeypatch):
    import mmkd.distillers.teachers as teachers
    inputs, samples = batch(n=8, size=16)
    _, reference = recorded(plain, inputs, samples)
    messages = []
    monkeypatch.setattr(teachers, 'print_log', lambda msg, **kw: messages.append(msg))

    def unavailable(model, **kwargs):  # as on a platform without a compiler
        raise RuntimeError('Dynamo is not supported on this Python')

    monkeypatch.setattr(torch, 'compile', unavailable)
    d = compiled(teacher_ckpts, True)
    _, value = recorded(d, inputs, samples)
    torch.testing.assert_close(value, reference, atol=0, rtol=0)
    assert d.teacher_info('teacher').compile is None
    assert messages[-1].endswith(
        'torch.compile({}) failed (RuntimeError: Dynamo is not supported on this Python); '
        'its forward runs eagerly from now on.'), messages

    def broken(model, **kwargs):  # compiles, then fails in its first forward
        def forward(*args, **kw):
            raise RuntimeError('BackendCompilerFailed: C++ compile error')
        return forward

    monkeypatch.setattr(torch, 'compile', broken)
    d = compiled(teacher_ckpts, dict(mode='max-autotune'))
    _, value = recorded(d, inputs, samples)  # the same step, eagerly
    torch.testing.assert_close(value, reference, atol=0, rtol=0)
    assert "torch.compile({'mode': 'max-autotune'}) failed (RuntimeError: BackendCompilerFailed" \
        in messages[-1]


def test_compile_options_are_checked(teacher_ckpts):
    with pytest.raises(ValueError, match=r"compile=\{'modes': 'x'\}: give True .* \['fullgraph'"):
        compiled(teacher_ckpts, dict(modes='x'))
    teacher = dict(digits_cfg(teacher_ckpts['digits']).teacher, compile=True, trainable=True)
    with pytest.raises(ValueError, match='precision, channels_last and compile are options'):
        build(digits_cfg(teacher_ckpts['digits'], teacher=teacher))


@pytest.mark.slow
def test_compile_with_inductor_gives_the_eager_values(plain, teacher_ckpts):
    """The real compiler (about a minute on 2 cores): the generated kernels sum in other
    orders."""
    torch._dynamo.reset()
    d = compiled(teacher_ckpts, True)
    inputs, samples = batch(n=8, size=16)
    _, reference = recorded(plain, inputs, samples)
    _, value = recorded(d, inputs, samples)
    assert d.teacher_info('teacher').compile == {}
    torch.testing.assert_close(value, reference, atol=1e-4, rtol=1e-4)
