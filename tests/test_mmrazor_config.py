"""The MMRazor config converter (issue 31, item 1): MMRazor-format configs written here from
MMRazor 1.x's documented format (``SingleTeacherDistill`` + ``ConfigurableDistiller`` with
recorders, connectors, ``distill_losses`` and ``loss_forward_mappings``), converted, loaded,
built on the digits demo models and run for one loss step."""
import copy
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from conftest import DIGITS, REPO, batch, build, digits_cfg, run_tool
from mmkd.converters import ConversionError, convert_config

TOOL = osp.join(REPO, 'tools', 'model_converters', 'mmrazor2mmkd.py')
S, T = 'student_recorders', 'teacher_recorders'


def mo(source):
    return dict(type='ModuleOutputs', source=source)


def fwd(s_arg, t_arg, s_rec, t_rec, s_conn=None, t_conn=None, **extra):
    out = {s_arg: dict(from_student=True, recorder=s_rec, **extra.pop('s', {})),
           t_arg: dict(from_student=False, recorder=t_rec, **extra.pop('t', {}))}
    if s_conn:
        out[s_arg]['connector'] = s_conn
    if t_conn:
        out[t_arg]['connector'] = t_conn
    return out


def mmrazor_text(distiller, ckpt='/nonexistent/teacher.pth', model_type='SingleTeacherDistill',
                 **model_extra):
    """An MMRazor config's text: the digits student and teacher, the given distiller."""
    model = dict(_scope_='mmrazor', type=model_type,
                 architecture=dict(cfg_path=DIGITS['student'], pretrained=False),
                 teacher=dict(cfg_path=DIGITS['teacher'], pretrained=True),
                 teacher_ckpt=ckpt,
                 distiller=dict(type='ConfigurableDistiller', **distiller), **model_extra)
    return ('# an MMRazor 1.x distillation config\n'
            f'model = {model!r}\n'
            "val_cfg = dict(_delete_=True, type='mmrazor.SingleTeacherDistillValLoop')\n")


def write(tmp_path, text, name='mmrazor_cfg.py'):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def logits(loss):
    return dict(**{S: dict(fc=mo('head.fc'))}, **{T: dict(fc=mo('head.fc'))},
                distill_losses=dict(loss_kd=loss),
                loss_forward_mappings=dict(loss_kd=fwd('preds_S', 'preds_T', 'fc', 'fc')))


def feature(loss, s_src, t_src, s_arg='s_feature', t_arg='t_feature', connectors=None,
            s_conn=None, t_conn=None, s_kind='ModuleOutputs', t_kind='ModuleOutputs', **idx):
    return dict(**{S: dict(f=dict(type=s_kind, source=s_src))},
                **{T: dict(f=dict(type=t_kind, source=t_src))},
                distill_losses=dict(loss_f=loss), connectors=connectors or {},
                loss_forward_mappings=dict(loss_f=fwd(s_arg, t_arg, 'f', 'f', s_conn, t_conn,
                                                      **idx)))


BN_CONN = dict(type='ConvModuleConnector', in_channel=32, out_channel=128,
               norm_cfg=dict(type='BN'), act_cfg=None)
# name -> (distiller, expected method type, expected block fields)
CASES = dict(
    kd=(logits(dict(type='KLDivergence', tau=4, loss_weight=2.0)), 'LogitKD',
        dict(loss_weight=2.0)),
    kd_mean=(logits(dict(type='KLDivergence', tau=2, loss_weight=10, reduction='mean')),
             'LogitKD', dict(loss_weight=1.0)),  # / 10 classes
    dkd=(dict(**{S: dict(fc=mo('head.fc'))}, **{T: dict(fc=mo('head.fc'))},
              distill_losses=dict(loss_dkd=dict(type='DKDLoss', tau=1, beta=0.5, alpha=1)),
              loss_forward_mappings=dict(loss_dkd=dict(
                  preds_S=dict(from_student=True, recorder='fc'),
                  preds_T=dict(from_student=False, recorder='fc'),
                  gt_labels=dict(recorder='gt_labels', from_student=True, data_idx=1)))),
         'DKD', {}),
    dist=(logits(dict(type='DISTLoss', inter_loss_weight=1.0, intra_loss_weight=2.0, tau=1)),
          'DIST', {}),
    wsld=(logits(dict(type='WSLD', tau=2, loss_weight=2.5, num_classes=10)), 'WSLD',
          dict(loss_weight=2.5)),
    # ModuleOutputs with data_idx: the backbone's tuple of stages
    at=(feature(dict(type='ATLoss', loss_weight=1000.0), 'backbone', 'backbone',
                s=dict(data_idx=0), t=dict(data_idx=0)), 'AT', dict(student='backbone[0]')),
    cwd=(feature(dict(type='ChannelWiseDivergence', tau=4, loss_weight=3.0),
                 'backbone.layer4', 'backbone.layer4', s_conn='c',
                 connectors=dict(c=dict(type='ConvModuleConnector', in_channel=32,
                                        out_channel=128, act_cfg=None))),
         'CWD', dict(loss_weight=3.0)),
    pkd=(feature(dict(type='PKDLoss', loss_weight=6.0), 'backbone.layer4', 'backbone.layer4',
                 s_arg='preds_S', t_arg='preds_T', s_conn='c',
                 connectors=dict(c=dict(type='ConvModuleConnector', in_channel=32,
                                        out_channel=128, act_cfg=None))), 'PKD', {}),
    mgd=(feature(dict(type='MGDLoss', alpha_mgd=7e-5), 'backbone.layer4', 'backbone.layer4',
                 s_arg='preds_S', t_arg='preds_T', s_conn='m',
                 connectors=dict(m=dict(type='MGDConnector', student_channels=32,
                                        teacher_channels=128, lambda_mgd=0.15,
                                        mask_on_channel=True))), 'MGD', {}),
    # record_idx on a BasicBlock's ReLU: its second call is the block's output
    fitnet=(feature(dict(type='L2Loss', normalize=False, div_element=True, loss_weight=10),
                    'backbone.layer4.1.relu', 'backbone.layer4.2.relu', s_conn='c',
                    connectors=dict(c=dict(type='ConvModuleConnector', in_channel=32,
                                           out_channel=128, norm_cfg=dict(type='BN'))),
                    s=dict(record_idx=1), t=dict(record_idx=1)),
            'FeatureMSE', dict(student='backbone.layer4.1', teacher='backbone.layer4.2')),
    ab=(feature(dict(type='ABLoss', loss_weight=0.5), 'backbone.layer4.1.conv2',
                'backbone.layer4.2.conv2', s_conn='c', connectors=dict(c=BN_CONN)), 'AB', {}),
    ofd=(feature(dict(type='OFDLoss', loss_weight=1.0), 'backbone.layer4.1.bn2',
                 'backbone.layer4.2.bn2', s_conn='c', t_conn='t',
                 connectors=dict(c=BN_CONN, t=dict(type='OFDTeacherConnector'))), 'OFD',
         dict(student='backbone.layer4.1.bn2@input', loss_weight=1e-3)),
    # ModuleInputs: the head's fc input (the pooled feature)
    rkd=(dict(**{S: dict(f=dict(type='ModuleInputs', source='head.fc'))},
              **{T: dict(f=dict(type='ModuleInputs', source='head.fc'))},
              distill_losses=dict(d=dict(type='DistanceWiseRKD', with_l2_norm=False),
                                  a=dict(type='AngleWiseRKD', loss_weight=5.0,
                                         with_l2_norm=False)),
              loss_forward_mappings=dict(
                  d=fwd('preds_S', 'preds_T', 'f', 'f', s=dict(data_idx=0),
                        t=dict(data_idx=0)),
                  a=fwd('preds_S', 'preds_T', 'f', 'f'))), 'RKD', dict(student='head.fc@input')),
    crd=(dict(**{S: dict(neck=mo('neck'), data_samples=dict(type='ModuleInputs', source=''))},
              **{T: dict(neck=mo('neck'))},
              distill_losses=dict(loss_crd=dict(type='CRDLoss', loss_weight=0.8, neg_num=8,
                                                sample_n=16)),
              connectors=dict(s=dict(type='CRDConnector', dim_in=32, dim_out=128),
                              t=dict(type='CRDConnector', dim_in=128, dim_out=128)),
              loss_forward_mappings=dict(loss_crd=dict(
                  s_feats=dict(from_student=True, recorder='neck', connector='s'),
                  t_feats=dict(from_student=False, recorder='neck', connector='t'),
                  data_samples=dict(from_student=True, recorder='data_samples',
                                    data_idx=1)))), 'CRD', {}),
    ft=(feature(dict(type='FTLoss', loss_weight=1.0), 'backbone.layer4', 'backbone.layer4',
                s_conn='tr', t_conn='pa',
                connectors=dict(tr=dict(type='Translator', in_channel=32, out_channel=64),
                                pa=dict(type='Paraphraser', in_channel=128, out_channel=64))),
        'FT', {}),
)


def student_cfg(model):
    """The converted model as the Runner builds it (the student's data preprocessor)."""
    base = Config.fromfile(DIGITS['student'])
    model = copy.deepcopy(model)
    model.student.data_preprocessor = dict(type='ClsDataPreprocessor', **base.data_preprocessor)
    model.dry_run_input_shape = (2, 3, 16, 16)
    return model


@pytest.mark.parametrize('name', list(CASES))
def test_each_loss_family_converts_builds_and_runs(name, tmp_path, teacher_ckpts):
    distiller, method, fields = CASES[name]
    src = write(tmp_path, mmrazor_text(distiller, teacher_ckpts['digits']))
    result = convert_config(src)
    assert result.unsupported == []
    assert f'# Converted from the MMRazor config {src}' in result.text
    out = write(tmp_path, result.text, 'mmkd_cfg.py')
    cfg = Config.fromfile(out)
    assert cfg.custom_imports == dict(imports=['mmkd'], allow_failed_imports=False)
    assert cfg.model.type == 'mmkd.Distiller' and cfg.model.student.type == 'ImageClassifier'
    assert cfg.model.teacher == dict(config=DIGITS['teacher'], checkpoint=teacher_ckpts['digits'])
    block = next(iter(cfg.model.blocks.values()))
    assert block.method.type == method
    for k, v in fields.items():
        assert block[k] == pytest.approx(v) if isinstance(v, float) else block[k] == v, k
    torch.manual_seed(0)
    model = build(student_cfg(cfg.model))
    inputs, samples = batch(n=4, size=16)
    for i, s in enumerate(samples):
        s.set_metainfo(dict(sample_idx=i))
    model.train()
    # three training iterations (SGD on the student and the methods' modules)
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.SGD(params, lr=0.01)
    before = [p.detach().clone() for p in params]
    for _ in range(3):
        losses = model(inputs, samples, mode='loss')
        distill = [v for k, v in losses.items() if k.startswith('distill.') and 'loss' in k]
        assert distill and all(torch.isfinite(v) for v in distill)
        optim.zero_grad()
        sum(v for k, v in losses.items() if 'loss' in k).backward()
        optim.step()
    assert all(torch.isfinite(p).all() for p in params)
    assert any(not torch.equal(a, p) for a, p in zip(before, params))


def test_converted_kd_equals_hand_written_digits_kd(tmp_path, teacher_ckpts):
    src = write(tmp_path, mmrazor_text(
        logits(dict(type='KLDivergence', tau=4, loss_weight=1.0)), teacher_ckpts['digits']))
    out = write(tmp_path, convert_config(src).text, 'kd.py')
    conv = student_cfg(Config.fromfile(out).model)
    conv.blocks = dict(logits=conv.blocks.pop('kd'))
    values = []
    for model_cfg in (digits_cfg(teacher_ckpts['digits']), conv):
        torch.manual_seed(0)
        model = build(model_cfg)
        torch.manual_seed(1)
        losses = model(*batch(n=4, size=16), mode='loss')
        values.append(losses['distill.logits.loss_kd'])
    assert values[0].item() > 0
    torch.testing.assert_close(values[0], values[1])


def test_fpn_teacher_distill_maps_to_early_stopping_teacher(tmp_path):
    src = write(tmp_path, mmrazor_text(logits(dict(type='KLDivergence')),
                                       model_type='FpnTeacherDistill'))
    text = convert_config(src).text
    assert 'stop_teacher_early' in text and 'stop_teacher_early=False' not in text


def test_connector_map(tmp_path):
    src = write(tmp_path, mmrazor_text(CASES['fitnet'][0]))
    assert convert_config(src).connector_map == {
        'distiller.connectors.c.conv_module.conv.': 'methods.f.connectors.0.0.',
        'distiller.connectors.c.conv_module.bn.': 'methods.f.connectors.0.1.'}
    src = write(tmp_path, mmrazor_text(CASES['cwd'][0]))
    assert convert_config(src).connector_map == {
        'distiller.connectors.c.conv_module.conv.': 'methods.f.connectors.0.'}
    src = write(tmp_path, mmrazor_text(CASES['kd'][0]))
    assert convert_config(src).connector_map == {}


@pytest.mark.parametrize('model_type', ['DataFreeDistillation', 'SelfDistill'])
def test_refused_distillers_named(tmp_path, model_type):
    src = write(tmp_path, mmrazor_text(logits(dict(type='KLDivergence')), model_type=model_type))
    for partial in (False, True):
        with pytest.raises(ConversionError, match=model_type):
            convert_config(src, allow_partial=partial)


REFUSED = dict(
    method_recorder=(dict(**{S: dict(fc=dict(type='MethodOutputs', source='a.b.c'))},
                          **{T: dict(fc=mo('head.fc'))},
                          distill_losses=dict(loss_kd=dict(type='KLDivergence')),
                          loss_forward_mappings=dict(loss_kd=fwd('preds_S', 'preds_T', 'fc',
                                                                 'fc'))), 'MethodOutputs'),
    function_recorder=(dict(**{S: dict(fc=dict(type='FunctionOutputs', source='m.f'))},
                            **{T: dict(fc=mo('head.fc'))},
                            distill_losses=dict(loss_kd=dict(type='KLDivergence')),
                            loss_forward_mappings=dict(loss_kd=fwd('preds_S', 'preds_T', 'fc',
                                                                   'fc'))), 'FunctionOutputs'),
    param_recorder=(dict(**{S: dict(fc=dict(type='ParameterOutputs', source='head.fc.weight'))},
                         **{T: dict(fc=mo('head.fc'))},
                         distill_losses=dict(loss_kd=dict(type='KLDivergence')),
                         loss_forward_mappings=dict(loss_kd=fwd('preds_S', 'preds_T', 'fc',
                                                                'fc'))), 'ParameterOutputs'),
    l1=(feature(dict(type='L1Loss'), 'neck', 'neck'), "'L1Loss'"),
    l2_normalized=(feature(dict(type='L2Loss'), 'neck', 'neck'), 'L2Loss.normalize=True'),
    fbkd=(feature(dict(type='FBKDLoss'), 'neck', 'neck'), "'FBKDLoss'"),
    kl_sum=(logits(dict(type='KLDivergence', reduction='sum')), "reduction='sum'"),
    rkd_l2_norm=(feature(dict(type='AngleWiseRKD'), 'neck', 'neck', s_arg='preds_S',
                         t_arg='preds_T'), 'with_l2_norm=True'),
    record_idx=(feature(dict(type='ATLoss'), 'backbone.layer4', 'backbone.layer4',
                        s=dict(record_idx=1)), 'call 1'),
)


@pytest.mark.parametrize('name', list(REFUSED))
def test_unsupported_items_named_and_partial(name, tmp_path):
    distiller, what = REFUSED[name]
    distiller = copy.deepcopy(distiller)
    # a second, convertible block that the partial config keeps
    distiller[S]['ok'] = distiller[T]['ok'] = mo('head.fc')
    distiller['distill_losses']['loss_ok'] = dict(type='KLDivergence', tau=4)
    distiller['loss_forward_mappings']['loss_ok'] = fwd('preds_S', 'preds_T', 'ok', 'ok')
    src = write(tmp_path, mmrazor_text(distiller))
    with pytest.raises(ConversionError) as e:
        convert_config(src)
    msg = str(e.value).replace('L2Loss(normalize=True', 'L2Loss.normalize=True')
    assert what in msg
    result = convert_config(src, allow_partial=True)
    assert result.unsupported and '# NOT converted' in result.text
    cfg = Config.fromfile(write(tmp_path, result.text, 'partial.py'))
    assert list(cfg.model.blocks) == ['ok']


def load_tool():
    import importlib.util
    spec = importlib.util.spec_from_file_location('mmrazor2mmkd', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_help_answers_at_once():
    proc = run_tool([TOOL, '--help'], timeout=60)
    assert 'usage' in proc.stdout and '--checkpoint' in proc.stdout


def test_cli(tmp_path, capsys):
    tool = load_tool()
    src = write(tmp_path, mmrazor_text(CASES['kd'][0]))
    out = tmp_path / 'out.py'
    assert tool.main([src, '-o', str(out)]) == 0
    printed = capsys.readouterr()
    assert "type='LogitKD'" in printed.out and out.read_text() == printed.out
    bad = write(tmp_path, mmrazor_text(REFUSED['l1'][0]), 'bad.py')
    assert tool.main([bad, '-o', str(tmp_path / 'never.py')]) == 1
    assert 'L1Loss' in capsys.readouterr().err and not (tmp_path / 'never.py').exists()
    assert tool.main([bad, '--partial', '-o', str(tmp_path / 'p.py')]) == 0
    assert 'NOT converted' in (tmp_path / 'p.py').read_text()
    with pytest.raises(SystemExit):  # a usage error: neither CONFIG nor --checkpoint
        tool.main([])


def test_dkd_mean_reduction_is_a_batch_sum(tmp_path):
    # MMRazor's DKDLoss passes size_average=False to F.kl_div: 'mean' sums over the batch
    distiller = copy.deepcopy(CASES['dkd'][0])
    distiller['distill_losses']['loss_dkd']['reduction'] = 'mean'
    text = mmrazor_text(distiller) + 'train_dataloader = dict(batch_size=32)\n'
    result = convert_config(write(tmp_path, text))
    block = Config.fromfile(write(tmp_path, result.text, 'out.py')).model.blocks.dkd
    assert block.loss_weight == 32 and block.method.beta == 0.5
    assert any('size_average=False' in n for n in result.notes)
    with pytest.raises(ConversionError, match="reduction='mean'"):  # no batch size known
        convert_config(write(tmp_path, mmrazor_text(distiller), 'nobs.py'))


def test_connector_map_mgd_ab_ofd(tmp_path):
    maps = {n: convert_config(write(tmp_path, mmrazor_text(CASES[n][0]), f'{n}.py')
                              ).connector_map for n in ('mgd', 'ab', 'ofd')}
    assert maps['mgd'] == {'distiller.connectors.m.': 'methods.f.connectors.0.'}
    for n in ('ab', 'ofd'):
        assert maps[n] == {'distiller.connectors.c.conv_module.conv.': 'methods.f.connectors.0.0.',
                           'distiller.connectors.c.conv_module.bn.': 'methods.f.connectors.0.1.'}


def test_local_bases_scopes_and_mmrazor_tree(tmp_path):
    """A config inheriting a local base (MMRazor's two-stage configs), the mmcls scope
    renamed in every file, and ``mmrazor::`` paths found in the configs/ tree around it."""
    tree = tmp_path / 'configs'
    (tree / 'vanilla').mkdir(parents=True)
    (tree / 'distill').mkdir()
    (tree / 'vanilla' / 'student.py').write_text(f"_base_ = [{DIGITS['student']!r}]\n")
    distiller = copy.deepcopy(CASES['kd'][0])
    distiller['distill_losses']['unused'] = dict(type='L1Loss')  # no mapping: never computed
    base = mmrazor_text(distiller).replace(repr(DIGITS['student']),
                                           "'mmrazor::vanilla/student.py'")
    (tree / 'distill' / 'stage1.py').write_text(base + "pipe = [dict(_scope_='mmcls', type='X')]\n")
    top = tree / 'distill' / 'stage2.py'
    top.write_text("_base_ = ['./stage1.py']\nmodel = dict(distiller=dict(distill_losses=dict("
                   "loss_kd=dict(tau=2))))\n")
    result = convert_config(str(top))
    assert any('unused' in n for n in result.notes) and not result.unsupported
    cfg = Config.fromfile(write(tmp_path, result.text, 'out.py'))
    assert cfg.model.blocks.kd.method == dict(type='LogitKD', tau=2.0)
    assert cfg.model.student.type == 'ImageClassifier'
    assert str(tree / 'vanilla' / 'student.py') in result.text


def test_converted_cwd_equals_hand_written_cwd(tmp_path, teacher_ckpts):
    """The CWD case (a 1x1 conv connector on the student's last stage, tau 4, weight 3) gives
    the loss of the same distillation written by hand in mmkd, on the same batch and seeds."""
    src = write(tmp_path, mmrazor_text(CASES['cwd'][0], teacher_ckpts['digits']))
    conv = student_cfg(Config.fromfile(write(tmp_path, convert_config(src).text, 'cwd.py')).model)
    by_hand = student_cfg(digits_cfg(teacher_ckpts['digits'], blocks=dict(f=dict(
        student='backbone.layer4', teacher='backbone.layer4',
        method=dict(type='CWD', tau=4.0, projector='always'), loss_weight=3.0))))
    values = []
    for model_cfg in (by_hand, conv):
        torch.manual_seed(0)
        model = build(model_cfg)
        torch.manual_seed(1)
        losses = model(*batch(n=4, size=16), mode='loss')
        values.append(losses['distill.f.loss_cwd'])
    assert values[0].item() > 0
    torch.testing.assert_close(values[0], values[1])


def test_own_bases_and_settings_are_carried_and_the_run_trains(tmp_path, teacher_ckpts):
    """An MMRazor config with its own bases (a local MMRazor distillation config, which in turn
    inherits the digits data and schedule) and its own settings: the mmkd config inherits the
    same package/local bases (the MMRazor base replaced by its own bases), names the student
    by its config as architecture.cfg_path does, carries the settings (MMRazor's loops left
    out with a note) and trains through tools/train.py."""
    write(tmp_path, f'_base_ = [{DIGITS["student"]!r}]\n' + mmrazor_text(
        logits(dict(type='KLDivergence', tau=4, loss_weight=2.0)), teacher_ckpts['digits']),
        'parent.py')
    child = write(tmp_path, "_base_ = ['./parent.py']\n"
                  "optim_wrapper = dict(optimizer=dict(lr=0.05))\n"
                  "val_cfg = dict(_delete_=True, type='mmrazor.SingleTeacherDistillValLoop')\n",
                  'child.py')
    text = convert_config(child).text
    assert f'_base_ = [{DIGITS["student"]!r}]' in text and 'parent.py' not in text
    assert f"student={DIGITS['student']!r}" in text
    assert 'lr=0.05' in text and 'val_cfg: names an MMRazor class' in text
    assert 'SingleTeacherDistillValLoop' not in text.split('# Notes:')[1].split('\n\n', 1)[1]
    out = write(tmp_path, text, 'converted.py')
    cfg = Config.fromfile(out)
    assert cfg.optim_wrapper.optimizer.lr == 0.05 and cfg.val_cfg.get('type') != (
        'mmrazor.SingleTeacherDistillValLoop')
    from conftest import run_tool
    proc = run_tool(['tools/train.py', out, '--work-dir', str(tmp_path / 'work'),
                     '--cfg-options', 'train_cfg.max_epochs=1',
                     'train_dataloader.dataset.indices=64', 'val_dataloader.dataset.indices=32',
                     'train_dataloader.batch_size=32', 'default_hooks.logger.interval=1'])
    assert 'distill.kd.loss_kd' in proc.stdout and 'lr: 5.0000e-02' in proc.stdout, \
        proc.stdout[-3000:]


def test_bases_without_a_model_get_no_delete_key(tmp_path):
    """With bases that define no model (data, schedule, runtime), the converted model has no
    ``_delete_`` (MMEngine would leave it in the dict and the Distiller would get it)."""
    write(tmp_path, "train_cfg = dict(by_epoch=True, max_epochs=3)\n", 'schedule.py')
    src = write(tmp_path, "_base_ = ['./schedule.py']\n" + mmrazor_text(CASES['kd'][0]))
    text = convert_config(src).text
    assert '_delete_' not in text.split('model = dict(')[1]
    cfg = Config.fromfile(write(tmp_path, text, 'out.py'))
    assert '_delete_' not in cfg.model and cfg.model.student == DIGITS['student']
    assert cfg.train_cfg.max_epochs == 3
