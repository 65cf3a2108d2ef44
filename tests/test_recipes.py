"""The full-scale configs carry the training recipes their README tables document, and the
optimiser settings reach the distillation methods' own parameters (configs/*/README.md)."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper

from conftest import DIGITS, REPO, build, digits_cfg, random_teacher_checkpoint


def _authors_no_decay(name: str, param: torch.Tensor) -> bool:
    """The DiffKD authors' rule (image_classification_sota lib/utils/optim.py
    _add_weight_decay): no decay for 1-D parameters and biases."""
    return len(param.shape) == 1 or name.endswith('.bias')


def test_diffkd_imagenet_optimiser_reaches_every_method_parameter(tmp_path):
    """The optim_wrapper of configs/diffkd/resnet34_resnet18_in1k.py, applied to a small
    distiller whose methods hold BN, biases, an embedding, a 1-D scale and an orthogonal
    parametrisation: each parameter's weight decay follows the authors' rule, the methods'
    parameters included, and the frozen teacher is not optimised."""
    optim_cfg = Config.fromfile(
        osp.join(REPO, 'configs', 'diffkd', 'resnet34_resnet18_in1k.py')).optim_wrapper
    teacher = random_teacher_checkpoint(DIGITS['teacher'], str(tmp_path / 'teacher.pth'))
    blocks = dict(
        feat=dict(student='backbone.layer4', teacher='backbone.layer4',
                  method=dict(type='DiffKD', use_ae=True)),
        pooled=dict(student='neck', teacher='neck',
                    method=dict(type='VkD', normalize='batch', affine=True)))
    model = build(digits_cfg(teacher, blocks=blocks, dry_run_input_shape=(2, 3, 16, 16)))
    wrapper = build_optim_wrapper(model, optim_cfg)

    decay_of = {}
    for group in wrapper.optimizer.param_groups:
        assert group['nesterov'] is True and group['momentum'] == 0.9 and group['lr'] == 0.1
        for p in group['params']:
            assert id(p) not in decay_of, 'a parameter is in two groups'
            decay_of[id(p)] = group['weight_decay']
    named = dict(model.named_parameters())
    assert set(decay_of) == {id(p) for p in named.values()}
    assert not {id(p) for p in model.teacher.parameters()} & set(decay_of)
    for name, p in named.items():
        expected = 0. if _authors_no_decay(name, p) else 1e-4
        assert decay_of[id(p)] == pytest.approx(expected), (name, tuple(p.shape))
    # The methods' parameters are there, of every kind the rule distinguishes.
    methods = {n: p for n, p in named.items() if n.startswith('methods.')}
    assert any(n.endswith('time_embedding.weight') for n in methods)  # 2-D: decayed
    assert any(n.endswith('.scale') for n in methods)  # 1-D, neither norm nor bias
    assert any('parametrizations.weight.original' in n for n in methods)  # orthogonal W
    no_decay = [n for n, p in methods.items() if decay_of[id(p)] == 0]
    decayed = [n for n, p in methods.items() if decay_of[id(p)] > 0]
    assert no_decay and decayed


RECIPES = {
    # hunto/image_classification_sota configs/strategies/distill/diffkd/diffkd_b1.yaml
    # (8 GPUs x 32) and lib/utils/optim.py (Nesterov; no decay on 1-D parameters and biases).
    'diffkd/resnet34_resnet18_in1k.py': {
        'optim_wrapper.optimizer.type': 'SGD', 'optim_wrapper.optimizer.lr': 0.1,
        'optim_wrapper.optimizer.momentum': 0.9, 'optim_wrapper.optimizer.nesterov': True,
        'optim_wrapper.optimizer.weight_decay': 1e-4,
        'optim_wrapper.paramwise_cfg': dict(norm_decay_mult=0., bias_decay_mult=0.,
                                            flat_decay_mult=0.),
        'train_cfg.max_epochs': 100, 'param_scheduler.milestones': [30, 60, 90],
        'param_scheduler.gamma': 0.1, 'train_dataloader.batch_size': 32,
        'model.blocks.feat.method.ae_channels': 1024,
        'model.blocks.logits.method.distance.tau': 1.0},
    # Paper: lr 0.02, poly; the rest from CIRKD's train_kd.py (first release): batch 16 (8 x 2),
    # 40k iterations, weight decay 1e-4, poly power 0.9 to 0.
    'diffkd/deeplabv3_r101_r18_cityscapes.py': {
        'optim_wrapper.optimizer.lr': 0.02, 'optim_wrapper.optimizer.weight_decay': 1e-4,
        'optim_wrapper.optimizer.momentum': 0.9, 'train_cfg.max_iters': 40000,
        'param_scheduler': [dict(type='PolyLR', eta_min=0., power=0.9, begin=0, end=40000,
                                 by_epoch=False)],
        'train_dataloader.batch_size': 2, 'auto_scale_lr.base_batch_size': 16},
    # MMRazor kd_logits_resnet34_resnet18_8xb32_in1k (loss_weight 3, tau 1; 71.81).
    'kd/kd_resnet34_resnet18_8xb32_in1k.py': {
        'model.blocks.logits.loss_weight': 3.0, 'model.blocks.logits.method.tau': 1.0,
        'optim_wrapper.optimizer.lr': 0.1, 'optim_wrapper.optimizer.weight_decay': 1e-4,
        'train_cfg.max_epochs': 100},
    # clovaai/attention-feature-distillation main.py: CE + 0.9 KD(T 4) + 200 AFD, SGD 0.05,
    # momentum 0.9, wd 5e-4 on every parameter, no Nesterov, batch 64, 240 epochs.
    'rtk/afd_resnet56_resnet20_cifar100.py': {
        'optim_wrapper.optimizer.lr': 0.05, 'optim_wrapper.optimizer.momentum': 0.9,
        'optim_wrapper.optimizer.weight_decay': 5e-4, 'optim_wrapper.optimizer.nesterov': False,
        'train_dataloader.batch_size': 64, 'train_cfg.max_epochs': 240,
        'param_scheduler.milestones': [150, 180, 210], 'model.blocks.blocks.loss_weight': 200.,
        'model.blocks.blocks.method.qk_dim': 128, 'model.blocks.logits.loss_weight': 0.9,
        'model.blocks.logits.method.tau': 4.0},
}


def _get(cfg, dotted):
    value = cfg
    for key in dotted.split('.'):
        value = value[key]
    return value


def _plain(value):
    """Config dicts/lists as plain Python, without the `_scope_` keys MMEngine adds."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if k != '_scope_'}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


@pytest.mark.parametrize('rel', sorted(RECIPES))
def test_full_scale_recipe_values(rel):
    cfg = Config.fromfile(osp.join(REPO, 'configs', rel)).to_dict()
    for key, expected in RECIPES[rel].items():
        assert _plain(_get(cfg, key)) == _plain(expected), (rel, key)
