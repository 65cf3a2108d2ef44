"""The single-teacher distiller: an MMEngine model that wraps a student, a frozen teacher and
a set of distillation blocks.

One training step::

    batch -> student's data_preprocessor -> teacher (no grad, eval mode, hooks record, stops
    after the deepest recorded module) -> student (hooks record, task losses) -> each block's
    method(student_value, teacher_value) -> {'student.loss_*', 'distill.<block>.loss_*'}

``predict`` and ``tensor`` modes run the student alone, so the base config's evaluator and
``tools/test.py`` see an ordinary model.
"""
import copy
from typing import Dict, List, Optional, Sequence, Union

import torch
import torch.distributed as torch_dist
import torch.nn as nn
from mmengine.model import BaseModel, revert_sync_batchnorm
from mmengine.registry import DefaultScope

from ..recorders import (ModuleRecorder, RecordPoint, StopForward, expand_points, find_module,
                         parse_point)
from ..registry import MODELS
from .model_builder import (build_model_in_scope, infer_model_scope, load_checkpoint_strict,
                            load_model_config, without_pretrained)

BLOCK_KEYS = ('student', 'teacher', 'method', 'loss_weight')
TEACHER_KEYS = ('config', 'model', 'checkpoint', 'scope', 'revise_keys')


class DistillBlock:
    """One distillation block: where to read in each model, the method, its loss weight.

    ``student``/``teacher`` are a record point (``'neck'``, ``'neck[0]'``, ``'head.fc@input'``,
    a dict) or a list of them; with a list, the method receives a list of values.
    """

    def __init__(self, name: str, student, teacher, method: nn.Module, loss_weight: float = 1.0):
        self.name = name
        self.student_multi = isinstance(student, (list, tuple))
        self.teacher_multi = isinstance(teacher, (list, tuple))
        self.student_points = [parse_point(p) for p in
                               (student if self.student_multi else [student])]
        self.teacher_points = [parse_point(p) for p in
                               (teacher if self.teacher_multi else [teacher])]
        self.method = method
        self.loss_weight = float(loss_weight)

    @staticmethod
    def gather(recorder: ModuleRecorder, points: List[RecordPoint], multi: bool):
        values = [recorder.get(p) for p in points]
        return values if multi else values[0]


def _build_method(cfg: dict, block_name: str) -> nn.Module:
    from ..methods import BaseDistillMethod
    cfg = copy.deepcopy(cfg)
    # Methods live in mmkd's registry whatever the runner's default scope is.
    with DefaultScope.overwrite_default_scope('mmkd'):
        try:
            method = MODELS.build(cfg)
        except KeyError as e:
            if cfg.get('type') in MODELS.module_dict or '.' in str(cfg.get('type')):
                raise
            valid = sorted(k for k, v in MODELS.module_dict.items()
                           if isinstance(v, type) and issubclass(v, BaseDistillMethod)
                           and k not in ('BaseDistillMethod', 'LevelwiseMethod'))
            raise KeyError(f'Block {block_name!r}: unknown method type {cfg.get("type")!r}. '
                           f'Valid methods: {valid}.') from e
    if not isinstance(method, BaseDistillMethod):
        raise TypeError(f'Block {block_name!r}: {type(method).__name__} is not a '
                        'distillation method (mmkd.methods.BaseDistillMethod).')
    return method


@MODELS.register_module()
class SingleTeacherDistiller(BaseModel):
    """Distil one teacher into a student with any number of blocks.

    Args:
        student (dict | str): the student's model config (e.g. ``{{_base_.model}}``) or the path
            of a config whose ``model`` is the student (``'mmdet::...'`` or a local file).
        teacher (dict): ``config`` (a path as above; its ``default_scope`` says which package
            builds it) or ``model`` (a model dict), plus ``checkpoint`` (path or URL, loaded
            strictly) and optionally ``scope`` and ``revise_keys`` (``[(regex, replacement)]``
            applied to the checkpoint's keys, for weights from another codebase, e.g. timm).
        blocks (dict): ``name -> dict(student=point(s), teacher=point(s), method=cfg,
            loss_weight=1.0)``. See :mod:`mmkd.recorders` for point syntax.
        student_scope (str, optional): registry scope of the student; inferred when None.
        dry_run_input_shape (tuple): shape of the random batch run through both models at
            construction to size every method's modules. Default (2, 3, 224, 224).
        stop_teacher_early (bool): end the teacher forward after its deepest recorded module.
            Default True.
        eval_teacher (bool): ``predict``/``tensor`` run the teacher instead of the student
            (``tools/test.py --teacher``). Default False.
        init_cfg (dict, optional): as for any BaseModule.

    Training checkpoints keep only the student and the methods (the teacher is reloaded from
    its own checkpoint); ``state_dict`` omits ``teacher.*`` and loading tolerates its absence.
    """

    def __init__(self,
                 student: Union[dict, str],
                 teacher: dict,
                 blocks: Dict[str, dict],
                 student_scope: Optional[str] = None,
                 dry_run_input_shape: Sequence[int] = (2, 3, 224, 224),
                 stop_teacher_early: bool = True,
                 eval_teacher: bool = False,
                 data_preprocessor=None,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.student = self._build_student(student, student_scope, data_preprocessor)
        # Both models see the batch prepared by the student's preprocessor.
        self.data_preprocessor = self.student.data_preprocessor
        self.teacher = self._build_teacher(teacher)
        if not (torch_dist.is_available() and torch_dist.is_initialized()):
            # SyncBN (common in mmseg configs) cannot run in a single CPU process; with one
            # process it is plain BN anyway.
            self.student = revert_sync_batchnorm(self.student)
            self.teacher = revert_sync_batchnorm(self.teacher)
        self.eval_teacher = eval_teacher
        self.stop_teacher_early = stop_teacher_early

        if not isinstance(blocks, dict) or not blocks:
            raise ValueError('`blocks` must be a non-empty dict: name -> dict(student=..., '
                             'teacher=..., method=dict(type=...), loss_weight=...).')
        self.blocks: Dict[str, DistillBlock] = {}
        methods = {}
        for name, cfg in blocks.items():
            unknown = set(cfg) - set(BLOCK_KEYS)
            missing = {'student', 'teacher', 'method'} - set(cfg)
            if unknown or missing:
                raise KeyError(f'Block {name!r}: unknown keys {sorted(unknown)}, missing keys '
                               f'{sorted(missing)}; valid keys are {list(BLOCK_KEYS)}.')
            methods[name] = _build_method(cfg['method'], name)
            block = DistillBlock(
                name, expand_points(cfg['student'], self.student, f'student (block {name!r})'),
                expand_points(cfg['teacher'], self.teacher, f'teacher (block {name!r})'),
                methods[name], cfg.get('loss_weight', 1.0))
            for model, points, desc in ((self.student, block.student_points, 'student'),
                                        (self.teacher, block.teacher_points, 'teacher')):
                for point in points:  # fail here, naming the block, on a wrong module name
                    find_module(model, point.module, f'{desc} (block {name!r})')
            self.blocks[name] = block
        self.methods = nn.ModuleDict(methods)

        self.student_recorder = ModuleRecorder(
            self.student, [p for b in self.blocks.values() for p in b.student_points],
            'student')
        self.teacher_recorder = ModuleRecorder(
            self.teacher, [p for b in self.blocks.values() for p in b.teacher_points],
            'teacher')
        self._dry_run(tuple(dry_run_input_shape))

        # The teacher is never trained, synchronised by DDP, re-initialised or checkpointed.
        self.teacher.requires_grad_(False)
        self.teacher.eval()
        self._ddp_params_and_buffers_to_ignore = [
            f'teacher.{n}' for n, _ in self.teacher.named_parameters()] + [
            f'teacher.{n}' for n, _ in self.teacher.named_buffers()]
        self._register_state_dict_hook(_drop_teacher_from_state_dict)
        self.register_load_state_dict_post_hook(_ignore_missing_teacher_keys)

    # ------------------------------------------------------------------ construction
    def _build_student(self, student, scope, data_preprocessor):
        if isinstance(student, str):
            cfg, file_scope = load_model_config(student)
            scope = scope or file_scope
        else:
            cfg = student
        cfg = copy.deepcopy(cfg)
        # The Runner hands the config's top-level `data_preprocessor` (mmpretrain keeps it
        # there) to the outermost model, i.e. the distiller: it belongs to the student.
        if data_preprocessor is not None and cfg.get('data_preprocessor') is None:
            cfg['data_preprocessor'] = data_preprocessor
        self.student_scope = infer_model_scope(cfg, scope)
        return build_model_in_scope(cfg, self.student_scope)

    def _build_teacher(self, teacher):
        if not isinstance(teacher, dict):
            raise TypeError('`teacher` must be a dict(config=<path>, checkpoint=<path or url>).')
        unknown = set(teacher) - set(TEACHER_KEYS)
        if unknown:
            raise KeyError(f'teacher: unknown keys {sorted(unknown)}; valid keys are '
                           f'{list(TEACHER_KEYS)}.')
        if ('config' in teacher) == ('model' in teacher):
            raise KeyError('teacher: give exactly one of `config` (a config path) or `model` '
                           '(a model dict).')
        if 'checkpoint' not in teacher:
            raise KeyError('teacher: `checkpoint` (path or URL of the trained teacher) is '
                           'required.')
        source = teacher.get('config', teacher.get('model'))
        cfg, file_scope = load_model_config(source)
        cfg = without_pretrained(cfg)  # all teacher weights come from its checkpoint
        self.teacher_scope = infer_model_scope(cfg, teacher.get('scope') or file_scope)
        model = build_model_in_scope(cfg, self.teacher_scope)
        desc = f'teacher ({source if isinstance(source, str) else cfg.get("type")})'
        load_checkpoint_strict(model, teacher['checkpoint'], desc,
                               revise_keys=teacher.get('revise_keys', ()))
        self.teacher_checkpoint = teacher['checkpoint']
        # Runner.init_weights() must not re-initialise loaded weights.
        for m in model.modules():
            if hasattr(m, '_is_init'):
                m._is_init = True
        return model

    @torch.no_grad()
    def _dry_run(self, input_shape):
        """Run both models once on random input: size every method and find where the
        teacher forward can stop."""
        modes = {m: m.training for m in self.modules()}
        self.student.eval()
        self.teacher.eval()
        inputs = torch.randn(*input_shape)
        try:
            self._record(self.student_recorder, self.student, inputs, dry_run=True)
            self._record(self.teacher_recorder, self.teacher, inputs, dry_run=True)
        finally:
            for m, mode in modes.items():
                m.training = mode
        order = self.teacher_recorder.call_order
        last = order[-1]
        self.teacher_recorder.stop_after(last if self.stop_teacher_early else None,
                                         order.count(last))
        for block in self.blocks.values():
            s = DistillBlock.gather(self.student_recorder, block.student_points,
                                    block.student_multi)
            t = DistillBlock.gather(self.teacher_recorder, block.teacher_points,
                                    block.teacher_multi)
            block.method.build(s, t)
        self.student_recorder.data = {}
        self.teacher_recorder.data = {}

    @staticmethod
    def _record(recorder, model, inputs, data_samples=None, dry_run=False):
        """Forward ``model`` in tensor mode with ``recorder`` on (values land in the recorder).

        The dry run goes all the way: where to stop early is found from it. It has no data
        samples, which some models need after the recorded modules (a two-stage detector's RPN
        needs image metas): an error raised once every point has been recorded is ignored.
        """
        if dry_run:
            recorder.stop_after(None)
        recorder.start()
        try:
            model(inputs, data_samples, mode='tensor')
        except StopForward:
            pass
        except Exception:
            recorder.enabled = False
            missing = [str(p) for p in recorder.points if p not in recorder.data]
            if not dry_run or missing:
                raise
        recorder.finish()

    # ------------------------------------------------------------------ modes
    def forward(self, inputs, data_samples=None, mode: str = 'tensor'):
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode in ('predict', 'tensor'):
            model = self.teacher if self.eval_teacher else self.student
            return model(inputs, data_samples, mode=mode)
        raise RuntimeError(f'Invalid mode {mode!r}: only "loss", "predict" and "tensor" are '
                           'supported.')

    def loss(self, inputs, data_samples) -> Dict[str, torch.Tensor]:
        with torch.no_grad():
            self._record(self.teacher_recorder, self.teacher, inputs, data_samples)

        self.student_recorder.start()
        try:
            student_losses = self.student(inputs, data_samples, mode='loss')
        except Exception:
            self.student_recorder.enabled = False
            raise
        self.student_recorder.finish()

        losses = {f'student.{k}': v for k, v in student_losses.items()}
        for name, block in self.blocks.items():
            s = DistillBlock.gather(self.student_recorder, block.student_points,
                                    block.student_multi)
            t = DistillBlock.gather(self.teacher_recorder, block.teacher_points,
                                    block.teacher_multi)
            for k, v in block.method(s, t, data_samples).items():
                # Keys without 'loss' are diagnostics: logged, not optimised, not weighted.
                losses[f'distill.{name}.{k}'] = v * block.loss_weight if 'loss' in k else v
        # Release recorded tensors (and their graphs) once the losses hold what they need.
        self.student_recorder.data = {}
        self.teacher_recorder.data = {}
        return losses

    def train(self, mode: bool = True):
        super().train(mode)
        self.teacher.eval()  # BN statistics and dropout of the teacher stay frozen
        return self



def _drop_teacher_from_state_dict(module, state_dict, prefix, local_metadata):
    for key in [k for k in state_dict if k.startswith(prefix + 'teacher.')]:
        del state_dict[key]


def _ignore_missing_teacher_keys(module, incompatible_keys):
    missing = incompatible_keys.missing_keys
    missing[:] = [k for k in missing if not k.startswith(('teacher.', 'module.teacher.'))]
