"""Data-free distillation: a generator makes the training images; the student never sees a real
one. DAFL (Chen et al., ICCV 2019), DFAD (Fang et al., 2019), ZSKT (Micaelli & Storkey,
NeurIPS 2019), MMRazor's ``DataFreeDistillation`` / ``DAFLDataFreeDistillation``.

One training iteration (``train_step``), latents z (B, latent_dim) drawn as
:mod:`mmkd.datasets.latent` says::

    generator update  (optim_wrapper['generator'])
        x = G(z)                                    with gradient
        teachers on x (frozen, eval mode, gradient flows *through* them to x)
        generator_loss 'dafl':        DAFL's one-hot + activation + information-entropy terms
                                      on the teacher (mmkd.methods.DAFLGeneratorLoss)
                       'adversarial': the student on x as well (train mode, as the authors);
                                      loss = -(the weighted losses of the named blocks): the
                                      generator seeks where the student disagrees (DFAD, ZSKT)
    student_steps x student update  (optim_wrapper['student'])
        x = G(z').detach()           z' fresh ('fresh'), or the generator's z ('shared')
        teachers on x (no grad) -> student on x (tensor mode, recorded) -> every block's
        method(student value, teacher value) x its loss weight -> update

``student_first`` puts the student updates before the generator's. The three papers:

=====================  ===========  =============  ========  ================================
paper (authors' code)  order        student_steps  latents   generator_loss; student blocks
=====================  ===========  =============  ========  ================================
DAFL  DAFL-train.py    student 1st  1              shared    'dafl'; LogitKD (tau 1)
DFAD  DFAD_cifar.py    student 1st  5              fresh     'adversarial'; LogitL1
ZSKT  solver.py        generator    10 (scripts)   shared    'adversarial' on the KL block;
                       1st          (7: main.py)             ZSKTKL + 250 x AT per stage
=====================  ===========  =============  ========  ================================

DAFL's authors take one joint step: the generator's loss and the student's KD (on the same,
detached images and the same teacher outputs) are back-propagated together, then both
optimisers step. Student first with shared latents is that step exactly: the student's update
cannot change the generator's loss (DAFL's generator loss reads the teacher alone), and the
generator, not yet updated, makes the same images for its own update. ZSKT's loader regenerates
its fixed batch of latents with the updated generator for each student step: ``'shared'``
after the generator. DFAD draws fresh latents for every update.

Training data: the train dataloader is :class:`mmkd.LatentDataset` (seeds, no images); val/test
use the real val/test splits through the student alone, so ``tools/test.py`` and export see an
ordinary student. Checkpoints hold the student, the methods and the generator
(``generator.*``); the teachers are reloaded from their checkpoints.

Optimisers: two, MMEngine's ``OptimWrapperDict`` with keys ``'student'`` (the student and the
methods' modules) and ``'generator'``::

    optim_wrapper = dict(constructor='mmkd.DistillerOptimWrapperConstructor',
                         student=dict(type='OptimWrapper', optimizer=dict(type='SGD', ...)),
                         generator=dict(type='OptimWrapper', optimizer=dict(type='Adam', ...)))

After the generator's update the student's gradients (the adversarial loss reaches the student
too) are cleared, so each part moves only under its own optimiser and loss.
"""
import copy
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn
from mmengine.logging import MessageHub
from mmengine.optim import OptimWrapperDict
from mmengine.registry import DefaultScope

from ..datasets import latent as _latent  # noqa: F401  (registers mmkd.LatentDataset)
from ..methods import data_free_losses as _losses  # noqa: F401  (registers the methods)
from ..models import generators as _generators  # noqa: F401  (registers the generators)
from ..registry import MODELS
from ..utils.arguments import check_arguments
from .distiller import Distiller

GENERATOR_LOSSES = ('dafl', 'adversarial')
#: The block DataFreeDistiller adds for the 'dafl' generator loss (read in the generator's step
#: only, never in the student's).
DAFL_BLOCK = 'dafl_generator'
DAFL_KEYS = ('type', 'logits', 'features', 'one_hot', 'activation', 'information_entropy')
ADVERSARIAL_KEYS = ('type', 'blocks')
LATENTS = ('fresh', 'shared')


@MODELS.register_module()
class DataFreeDistiller(Distiller):
    """Distil a teacher into a student on a generator's images (module docstring).

    Args:
        student, teacher, teachers, blocks, **kwargs: as :class:`~mmkd.Distiller`. The blocks
            are what the *student* learns on generated images, with label-free methods (no
            data sample reaches them). Teachers must be frozen ones.
        generator (dict): the generator, ``dict(type='mmkd.DAFLGenerator', latent_dim=...,
            ...)`` (:mod:`mmkd.models.generators`); ``img_size`` and ``channels`` are filled
            from ``dry_run_input_shape`` (N, C, H, W) when not given.
        generator_loss (dict): what the generator learns:
            ``dict(type='dafl', logits='head.fc', features='head.fc@input', one_hot=1.0,
            activation=0.1, information_entropy=5.0)`` (teacher points and DAFL's weights,
            :class:`~mmkd.methods.DAFLGeneratorLoss`; defaults the authors'), or
            ``dict(type='adversarial', blocks=None)``: maximise the weighted losses of the
            named blocks (None: all), DFAD's ``-L1`` and ZSKT's ``-KL``.
        student_steps (int): student updates per iteration, >= 1. Default 1 (DAFL; DFAD 5,
            ZSKT 10).
        student_first (bool): the student's updates before the generator's. Default False.
        latents (str): ``'fresh'`` latents for every update, or ``'shared'``: the generator's
            for every student update of the iteration. Default 'fresh'.
    """

    def __init__(self,
                 student,
                 teacher: Optional[dict] = None,
                 blocks: Optional[Dict[str, dict]] = None,
                 generator: Optional[dict] = None,
                 generator_loss: Optional[dict] = None,
                 student_steps: int = 1,
                 student_first: bool = False,
                 latents: str = 'fresh',
                 teachers: Optional[Dict[str, dict]] = None,
                 **kwargs):
        if isinstance(student_steps, bool) or not isinstance(student_steps, int) or \
                student_steps < 1:
            raise ValueError(f'model.student_steps must be an integer >= 1, got '
                             f'{student_steps!r}.')
        if not isinstance(student_first, bool):
            raise TypeError(f'model.student_first must be True or False, got '
                            f'{student_first!r}.')
        if latents not in LATENTS:
            raise ValueError(f'model.latents={latents!r}: valid values are {list(LATENTS)}.')
        if not isinstance(generator, dict) or 'type' not in generator:
            raise TypeError('model.generator must be a generator config dict(type=..., ...), '
                            "e.g. dict(type='mmkd.DAFLGenerator', latent_dim=100), got "
                            f'{generator!r}.')
        if not isinstance(blocks, dict) or not blocks:
            raise ValueError('model.blocks: a DataFreeDistiller needs at least one block (what '
                             'the student learns from the teacher on generated images).')
        self.student_steps = student_steps
        self.student_first = student_first
        self.latents = latents
        kind, spec = self._parse_generator_loss(generator_loss, blocks)
        all_blocks = dict(blocks)
        if kind == 'dafl':
            if DAFL_BLOCK in blocks:
                raise ValueError(f'Block name {DAFL_BLOCK!r} is reserved by the DataFreeDistiller '
                                 "(its 'dafl' generator loss); rename the block.")
            first = next(iter(blocks.values()))
            all_blocks[DAFL_BLOCK] = dict(
                student=first.get('student') if isinstance(first, dict) else None,
                teacher=[spec['logits'], spec['features']],
                method=dict(type='DAFLGeneratorLoss', **{
                    k: spec[k] for k in ('one_hot', 'activation', 'information_entropy')
                    if k in spec}))
        super().__init__(student, teacher=teacher, blocks=all_blocks, teachers=teachers,
                         **kwargs)
        for name, t in self._teachers.items():
            if t.kind != 'frozen':
                raise ValueError(f'DataFreeDistiller: teacher {name!r} is of kind '
                                 f'{t.kind!r}; data-free distillation distils frozen, trained '
                                 'teachers (the generator learns through them).')
        self.generator_loss = kind
        # The DAFL block is read in the generator's step only.
        self.generator_block = self.blocks.pop(DAFL_BLOCK) if kind == 'dafl' else None
        self.adversarial_blocks = (list(spec['blocks'] or blocks) if kind == 'adversarial'
                                   else [])
        self.generator = self._build_generator(generator)
        self._steps = 0  # train steps outside a Runner (the latents' seed then)

    # ------------------------------------------------------------------ construction
    @staticmethod
    def _parse_generator_loss(spec, blocks):
        valid = ("model.generator_loss must be dict(type='dafl', logits=<teacher point>, "
                 "features=<teacher point>, one_hot=, activation=, information_entropy=) or "
                 "dict(type='adversarial', blocks=[<block names>] or None)")
        if isinstance(spec, str):
            spec = dict(type=spec)
        if not isinstance(spec, dict) or spec.get('type') not in GENERATOR_LOSSES:
            raise ValueError(f'{valid}; got {spec!r}.')
        spec = dict(spec)
        kind = spec['type']
        keys = DAFL_KEYS if kind == 'dafl' else ADVERSARIAL_KEYS
        unknown = sorted(set(spec) - set(keys))
        if unknown:
            raise KeyError(f'model.generator_loss ({kind!r}): unknown keys {unknown}; valid '
                           f'keys are {list(keys)}.')
        if kind == 'dafl':
            spec.setdefault('logits', 'head.fc')
            spec.setdefault('features', 'head.fc@input')
        else:
            names = spec.setdefault('blocks', None)
            if names is not None:
                if isinstance(names, str) or not isinstance(names, (list, tuple)) or not names:
                    raise TypeError(f"model.generator_loss.blocks: a list of block names or "
                                    f'None (all), got {names!r}.')
                missing = [n for n in names if n not in blocks]
                if missing:
                    raise KeyError(f'model.generator_loss.blocks: unknown block(s) {missing}; '
                                   f'the blocks are {list(blocks)}.')
        return kind, spec

    def _build_generator(self, cfg: dict) -> nn.Module:
        cfg = copy.deepcopy(dict(cfg))
        n, c, h, w = self.dry_run_input_shape
        if h != w:
            raise ValueError(f'DataFreeDistiller: the generators make square images; '
                             f'model.dry_run_input_shape={self.dry_run_input_shape} is not.')
        if cfg.get('img_size') is None:
            cfg['img_size'] = h
        if cfg.get('channels') is None:
            cfg['channels'] = c
        with DefaultScope.overwrite_default_scope('mmkd'):
            cls = cfg['type'] if isinstance(cfg['type'], type) else MODELS.get(cfg['type'])
            if cls is None:
                raise KeyError(f'model.generator: unknown type {cfg["type"]!r} (mmkd has '
                               "'mmkd.DAFLGenerator' and 'mmkd.ZSKTGenerator').")
            check_arguments(cls, {k: v for k, v in cfg.items() if k != 'type'},
                            'model.generator')
            # Built from its own random stream, so that the student's init_weights (run by the
            # Runner afterwards) draws what it draws in a plain student run.
            state = torch.get_rng_state()
            seed = int(torch.randint(0, 2 ** 62, (1, )))
            torch.set_rng_state(state)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                generator = MODELS.build(cfg)
        generator.eval()
        with torch.no_grad():
            out = generator(torch.zeros(2, generator.latent_dim))
        generator.train()
        if tuple(out.shape[2:]) != (h, w) or out.shape[1] not in (1, c):
            raise ValueError(f'model.generator makes images of shape {tuple(out.shape[1:])}, '
                             f'but the student takes {(c, h, w)} (model.dry_run_input_shape); '
                             'a generator of one channel (channels=1) is repeated to the '
                             "student's channels.")
        return generator

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        """The generator's images for latents ``z``, with the student's channels: a one-channel
        generator (``channels=1``, grayscale data loaded as RGB, as the digits; DAFL's and
        DFAD's MNIST generators make one channel) is repeated to them."""
        x = self.generator(z)
        channels = self.dry_run_input_shape[1]
        return x.expand(-1, channels, -1, -1) if x.shape[1] != channels else x

    def extra_optim_groups(self) -> Dict[str, nn.Module]:
        """The generator gets its own optimiser (``optim_wrapper.generator``)."""
        return {'generator': self.generator}

    # ------------------------------------------------------------------ latents
    @staticmethod
    def _seeds(data) -> List[int]:
        inputs = data.get('inputs') if isinstance(data, dict) else None
        if isinstance(inputs, torch.Tensor):
            items = list(inputs.reshape(-1)) if inputs.dim() <= 1 else None
        elif isinstance(inputs, (list, tuple)):
            items = list(inputs)
        else:
            items = None
        ok = items and all(
            (isinstance(x, torch.Tensor) and x.numel() == 1 and not x.is_floating_point())
            or (isinstance(x, int) and not isinstance(x, bool)) for x in items)
        if not ok:
            shape = tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else type(inputs)
            raise ValueError(
                'DataFreeDistiller trains on generated images only: its train_dataloader gives '
                "integer seeds (dataset=dict(type='mmkd.LatentDataset', num_samples=...)), "
                f'not images; got inputs {shape}. The real val/test splits stay in '
                'val_dataloader / test_dataloader.')
        seeds = [int(x) for x in items]
        if min(seeds) < 0:
            raise ValueError(f'DataFreeDistiller: latent seeds must be >= 0, got {seeds[:8]}.')
        return seeds

    def _iteration(self) -> int:
        hub = MessageHub.get_current_instance()
        it = hub.get_info('iter') if hub is not None else None
        return self._steps if it is None else int(it)

    def latent_sampler(self, seeds: Sequence[int]):
        """A function drawing latents (B, latent_dim) ~ N(0, 1), B = len(seeds), from a
        generator seeded with the batch's seeds and this iteration (:mod:`mmkd.datasets.
        latent`): the same on resume, on any machine, fresh at each iteration."""
        entropy = np.random.SeedSequence([*seeds, self._iteration()])
        rng = torch.Generator().manual_seed(int(entropy.generate_state(1, np.uint64)[0]))
        device = next(self.generator.parameters()).device
        dim = self.generator.latent_dim

        def draw() -> torch.Tensor:
            return torch.randn(len(seeds), dim, generator=rng).to(device)
        return draw

    # ------------------------------------------------------------------ training
    def loss(self, inputs, data_samples):
        raise RuntimeError('DataFreeDistiller trains through its own train_step (a generator '
                           'update and student updates on generated images); mode="loss" on '
                           'a batch of real images is not part of data-free distillation.')

    @staticmethod
    def _wrappers(optim_wrapper):
        if not isinstance(optim_wrapper, OptimWrapperDict) or \
                set(optim_wrapper.keys()) != {'student', 'generator'}:
            raise TypeError(
                "DataFreeDistiller needs two optimisers, MMEngine's OptimWrapperDict with keys "
                "'student' and 'generator': optim_wrapper=dict(constructor='mmkd."
                "DistillerOptimWrapperConstructor', student=dict(type='OptimWrapper', "
                "optimizer=...), generator=dict(type='OptimWrapper', optimizer=...)); got "
                f'{type(optim_wrapper).__name__}'
                f'{list(optim_wrapper.keys()) if hasattr(optim_wrapper, "keys") else ""}.')
        return optim_wrapper['student'], optim_wrapper['generator']

    def train_step(self, data, optim_wrapper) -> Dict[str, torch.Tensor]:
        student_wrapper, generator_wrapper = self._wrappers(optim_wrapper)
        draw = self.latent_sampler(self._seeds(data))
        shared = draw() if self.latents == 'shared' else None
        log_vars: Dict[str, torch.Tensor] = {}
        for phase in (('student', 'generator') if self.student_first
                      else ('generator', 'student')):
            if phase == 'generator':
                z = shared if shared is not None else draw()
                log_vars.update(self._generator_step(z, generator_wrapper))
                # The adversarial loss reached the student's parameters as well: only the
                # student's own loss may move them.
                student_wrapper.zero_grad()
            else:
                sums: Dict[str, torch.Tensor] = {}
                for _ in range(self.student_steps):
                    z = shared if shared is not None else draw()
                    for k, v in self._student_step(z, student_wrapper).items():
                        v = v.detach()  # logged only: no graph kept across the updates
                        sums[k] = sums[k] + v if k in sums else v
                # The mean over the iteration's student updates.
                log_vars.update({k: v / self.student_steps for k, v in sums.items()})
        self._steps += 1
        return log_vars

    def _student_step(self, z: torch.Tensor, wrapper) -> Dict[str, torch.Tensor]:
        with wrapper.optim_context(self):
            with torch.no_grad():
                x = self.generate(z)
            self.record_teachers(x, None)
            self._record(self.student_recorder, self.student, x, None)
            values = {name: (block.student_value(self.student_recorder),
                             block.teacher_value(self._teachers))
                      for name, block in self.blocks.items()}
            if not self._shapes_checked:
                self._check_shapes_as_built(values)
                self._shapes_checked = True
            losses = {}
            for name, block in self.blocks.items():
                weight = block.loss_weight.current()
                for k, v in self._block_terms(name, block, *values[name], None).items():
                    losses[f'distill.{name}.{k}'] = v * weight if 'loss' in k else v
                losses[f'distill.{name}.weight'] = torch.tensor(float(weight))
            skip = self._check_finite_losses(losses, x)
            self._clear_records()
        parsed, log_vars = self.parse_losses(losses)
        return self._update(wrapper, parsed, log_vars, skip)

    @staticmethod
    def _update(wrapper, parsed, log_vars, skip: bool) -> Dict[str, torch.Tensor]:
        """One optimiser's update from its part's loss, or none for a step the non-finite
        policy skips (then its non-finite values are left out of the log)."""
        if skip:
            wrapper.zero_grad()
            return {k: v for k, v in log_vars.items() if torch.isfinite(v).all()}
        wrapper.update_params(parsed)
        return log_vars

    def _generator_step(self, z: torch.Tensor, wrapper) -> Dict[str, torch.Tensor]:
        with wrapper.optim_context(self):
            x = self.generate(z)
            # the graph through the frozen teachers kept: the generator learns through them
            self.record_teachers(x, None, grad=True)
            losses = {}
            if self.generator_loss == 'dafl':
                block = self.generator_block
                terms = block.method(None, block.teacher_value(self._teachers), None)
                losses.update({f'generator.{k}': v for k, v in terms.items()})
            else:
                self._record(self.student_recorder, self.student, x, None)
                total = x.new_zeros(())
                for name in self.adversarial_blocks:
                    block = self.blocks[name]
                    weight = block.loss_weight.current()
                    terms = self._block_terms(name, block, block.student_value(
                        self.student_recorder), block.teacher_value(self._teachers), None)
                    for k, v in terms.items():
                        if 'loss' in k:
                            total = total - weight * v
                losses['generator.loss_adversarial'] = total
            skip = self._check_finite_losses(losses, x)
            self._clear_records()
        parsed, log_vars = self.parse_losses(losses)
        log_vars = {('generator.loss' if k == 'loss' else k): v.detach()
                    for k, v in log_vars.items()}
        return self._update(wrapper, parsed, log_vars, skip)
