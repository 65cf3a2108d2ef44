"""Cached teacher outputs: the store that ``tools/cache_teacher.py`` writes and the
``cached`` teacher kind (:class:`mmkd.distillers.teacher_kinds.CachedTeacher`) reads.

The tool builds the training run from its config (the same seed, dataloader, sampler, epochs
and world size), iterates the training batches exactly as training will see them (every
epoch's augmented views, in order), runs each teacher once per batch and stores the values
of the record points the blocks read. Training with ``teachers.<name>.cache=DIR`` then reads
those values instead of running the teacher. A store is a folder::

    DIR/meta.json                        format, fingerprint, teachers, points, layouts, shards
                                         (written last, atomically: no meta.json = incomplete)
    DIR/<teacher>/r<rank>.index.npz      per batch: digest (16 bytes), first row, rows, and a
                                         CRC-32 of every array's rows
    DIR/<teacher>/r<rank>.p<i>.c<j>.<array>.bin
                                         raw rows (rows, *per-sample shape) of point i's
                                         component j (a tuple value has several), read with
                                         numpy.memmap

**Which batch is which.** A batch is found by a digest of what the teacher is fed: the
batch after the student's data preprocessor (``inputs``; BLAKE2b-128 of its bytes, shape and
dtype; on an accelerator a strided sample of at most 65,536 elements is hashed, to avoid
copying the batch to the host) plus the raw data-sample fields the teacher reads. Replay is
content-addressed: a resumed run, or a batch seen again, finds its values; a batch the cache
has not seen (another seed, another pipeline) is refused by name.

**Fingerprint.** Everything the values depend on is recorded as flat ``key: value`` text and
compared key by key, so a mismatch names what differs:

- at the distiller's build (per teacher): the teacher's model config, its checkpoint (SHA-256
  of the file; a URL as given), ``revise_keys``, ``scope``, ``normalisation``, ``inputs``,
  ``precision``, ``channels_last``, ``compile`` and the student's ``data_preprocessor``;
- when training starts (:class:`mmkd.TeacherCacheHook`, added by ``tools/train.py``): the
  ``train_dataloader`` (dataset and pipeline, sampler, batch size, workers), ``randomness``
  (seed), ``train_cfg`` (loop, epochs or iterations), whether a validation loop is built (its
  sampler draws from NumPy's generator before the training batches do) and the world size;
- the record points: the cache must hold every point the blocks read.

**Storage.** ``dtype='fp32'`` keeps the values as the live teacher gives them (training from
the cache is bit-identical to the live run); ``'fp16'`` halves the bytes. ``topk=K`` keeps the
K largest logits of each 2-D ``(N, C)`` point (in ``dtype``) with their class indices and one
fill value per sample for the other classes, chosen as TinyViT fills its sparse soft labels
(the remaining probability mass spread uniformly over the other classes):

    fill = log( (1 / (C - K)) * sum_{c not in top K} exp(z_c) )     (log-mean-exp)

so that ``softmax`` of the rebuilt logits equals the teacher's on the top K classes at
temperature 1 (up to the storage dtype), and the other classes share the rest of the mass
equally. At another temperature the rebuilt distribution differs from the teacher's; the tool
measures by how much (KL and total variation at T = 1 and 4). Only blocks whose
method reads logits (``reads_teacher_logits = True`` on the method class: LogitKD, DKD, RLD,
DIST, EnsembleKD, WSLD) may read a top-K point; features are stored whole (full or fp16).

**Damage.** ``meta.json`` is written last; every file's size is checked against it when the
cache is opened, and every batch's rows against their CRC-32 when they are read: a truncated
or overwritten cache fails naming the file, never trains on wrong values.
"""
import base64
import hashlib
import json
import math
import os
import os.path as osp
import zipfile
import zlib
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

FORMAT = 'mmkd-teacher-cache/1'
META = 'meta.json'
#: meta.json is read whole: a larger file is not a cache's.
MAX_META_BYTES = 64 * 2 ** 20
#: Elements hashed from a batch that is not in host memory.
DEVICE_DIGEST_ELEMENTS = 2 ** 16
STORAGE_DTYPES = {'fp32': np.float32, 'fp16': np.float16}
#: train_cfg keys that do not change which batches training sees.
_RUN_IGNORED = ('val_interval', 'val_begin', 'dynamic_intervals')


class TeacherCacheError(RuntimeError):
    """A cache that does not fit this run, is damaged or incomplete, or lacks a batch."""


# ---------------------------------------------------------------------- fingerprints
def flatten(value, prefix: str) -> Dict[str, str]:
    """``value`` (nested dicts/lists of plain values) as ``{'a.b[0].c': repr}``: the form in
    which fingerprints are stored and compared (a mismatch names its key)."""
    out = {}
    if isinstance(value, dict):
        if not value:
            out[prefix] = '{}'
        for key in sorted(value, key=str):
            out.update(flatten(value[key], f'{prefix}.{key}'))
    elif isinstance(value, (list, tuple)):
        if not value:
            out[prefix] = '[]'
        for i, item in enumerate(value):
            out.update(flatten(item, f'{prefix}[{i}]'))
    elif isinstance(value, type) or callable(value):
        out[prefix] = f'{getattr(value, "__module__", "")}.{getattr(value, "__qualname__", value)}'
    else:
        out[prefix] = repr(value)
    return out


def file_digest(path: str) -> str:
    """``sha256:<hex>`` of a local file (a checkpoint), or the string itself (a URL)."""
    if not isinstance(path, str) or not osp.isfile(path):
        return str(path)
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(2 ** 22), b''):
            h.update(chunk)
    return 'sha256:' + h.hexdigest()


def teacher_model_config(spec: dict) -> dict:
    """A teacher's model config as its ``config``/``model`` key gives it, before a build (a
    model's ``__init__`` may fill in defaults in place)."""
    from .model_builder import load_model_config, without_pretrained
    return without_pretrained(load_model_config(spec.get('config', spec.get('model')))[0])


def teacher_fingerprint(spec: dict, model_cfg: dict, student_preprocessor) -> Dict[str, str]:
    """What one teacher's values depend on, besides the batches: its model config, its
    checkpoint's bytes and how it is fed (``spec`` is its ``teachers.<name>`` entry)."""
    fp = flatten(dict(model_cfg), 'teacher.model')
    fp['teacher.checkpoint'] = file_digest(spec.get('checkpoint'))
    for key, default in (('revise_keys', ()), ('scope', None), ('normalisation', None),
                         ('inputs', 'inputs'), ('precision', 'fp32'),
                         ('channels_last', False), ('compile', None)):
        value = spec.get(key, default)
        if key == 'compile' and value is False:
            value = None  # the same eager forward
        fp.update(flatten(list(value) if isinstance(value, tuple) else value, f'teacher.{key}'))
    fp.update(flatten(student_preprocessor, 'student.data_preprocessor'))
    return fp


def run_fingerprint(cfg, world_size: int) -> Dict[str, str]:
    """What decides the training batches: dataloader, randomness, loop length, whether a
    validation loop is built, and the world size (``cfg`` is the run's config)."""
    fp = flatten(_plain(cfg.get('train_dataloader')), 'train_dataloader')
    fp.update(flatten(_plain(cfg.get('randomness')), 'randomness'))
    train_cfg = {k: v for k, v in _plain(cfg.get('train_cfg') or {}).items()
                 if k not in _RUN_IGNORED}
    fp.update(flatten(train_cfg, 'train_cfg'))
    fp['val_loop'] = repr(bool(cfg.get('val_cfg') and cfg.get('val_dataloader')))
    fp['world_size'] = repr(int(world_size))
    return fp


def _plain(value):
    """Config dicts as plain dicts (for flattening)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def differences(stored: Dict[str, str], current: Dict[str, str], most: int = 8) -> List[str]:
    """Lines ``key: cache X, this run Y`` for the keys that differ (at most ``most``)."""
    keys = sorted(k for k in set(stored) | set(current) if stored.get(k) != current.get(k))
    lines = [f'{k}: cache {stored.get(k, "<absent>")}, this run {current.get(k, "<absent>")}'
             for k in keys[:most]]
    if len(keys) > most:
        lines.append(f'... and {len(keys) - most} more')
    return lines


def check_fingerprint(stored: Dict[str, str], current: Dict[str, str], where: str,
                      folder: str, what: str) -> None:
    diff = differences(stored, current)
    if diff:
        raise TeacherCacheError(
            f'{where}: the teacher cache {folder!r} was built for another {what}; it differs '
            'in:\n  ' + '\n  '.join(diff) + '\nRebuild it for this config with '
            'tools/cache_teacher.py, or train with the live teacher (remove `cache`).')


# ---------------------------------------------------------------------- batch digests
def batch_digest(inputs, fields: Sequence[torch.Tensor] = ()) -> bytes:
    """16 bytes that identify what a teacher is fed: ``inputs`` (N, C, H, W) and the raw
    data-sample images it reads (see the module docstring)."""
    h = hashlib.blake2b(digest_size=16)
    for x in [inputs, *fields]:
        if not torch.is_tensor(x):
            raise TypeError(f'A cached teacher is fed tensors; got {type(x).__name__}.')
        h.update(repr((tuple(x.shape), str(x.dtype))).encode())
        flat = x.detach().reshape(-1)
        if x.device.type != 'cpu':
            step = max(1, math.ceil(flat.numel() / DEVICE_DIGEST_ELEMENTS))
            flat = flat[::step].cpu()
        h.update(flat.contiguous().view(torch.uint8).numpy().tobytes()
                 if flat.numel() else b'')
    return h.digest()


def view_digest(view, inputs, data_samples) -> bytes:
    """:func:`batch_digest` of what a teacher with this view (``TeacherView``) is fed."""
    fields = [view._raw_field(f, inputs, data_samples) for f in view.fields]
    return batch_digest(inputs, fields)


def cache_batch(distiller, names: Sequence[str], inputs, data_samples,
                writer: 'CacheWriter') -> Dict[str, Dict[str, object]]:
    """Run the teachers ``names`` of ``distiller`` on one preprocessed batch as training
    does, and add their values to ``writer``; returns ``{teacher: {point: value}}``."""
    out = {}
    for name in names:
        t = distiller.teacher_info(name)
        t.record(inputs, data_samples, distiller._record)
        values = {str(p): t.get(p) for p in t.recorder.points}
        writer.add(name, view_digest(t.view, inputs, data_samples), values)
        out[name] = values
    distiller._clear_records()
    return out


# ---------------------------------------------------------------------- layouts
def _components(value, point: str) -> Tuple[str, List[torch.Tensor]]:
    if torch.is_tensor(value):
        return 'tensor', [value]
    if isinstance(value, (tuple, list)) and value and all(torch.is_tensor(v) for v in value):
        return type(value).__name__, list(value)
    raise TypeError(f'Teacher point {point!r} gives {type(value).__name__}; a cache stores a '
                    'tensor or a tuple/list of tensors.')


def layout_of(value, point: str, dtype: str, topk: Optional[int]) -> dict:
    """How a point's value is stored: its structure and, per component, the arrays (name,
    numpy dtype, per-sample shape) and the encoding."""
    struct, parts = _components(value, point)
    comps = []
    for x in parts:
        if x.dim() < 1:
            raise TypeError(f'Teacher point {point!r}: a cached value has a batch dimension; '
                            f'got a scalar.')
        sample = list(x.shape[1:])
        floating = x.is_floating_point()
        if topk is not None and floating and x.dim() == 2 and topk < x.shape[1]:
            index = 'int16' if x.shape[1] <= 2 ** 15 else 'int32'
            comps.append(dict(encoding='topk', k=int(topk), classes=int(x.shape[1]),
                              arrays=[['values', np.dtype(STORAGE_DTYPES[dtype]).name, [topk]],
                                      ['indices', index, [topk]], ['fill', 'float32', []]]))
        else:
            stored = np.dtype(STORAGE_DTYPES[dtype]).name if floating and dtype != 'fp32' \
                else str(x.dtype).replace('torch.', '')
            comps.append(dict(encoding='full', dtype=str(x.dtype).replace('torch.', ''),
                              arrays=[['value', stored, sample]]))
    return dict(struct=struct, components=comps)


def topk_fill(z: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """(N,) the logit given to the classes outside the top K: the log-mean-exp of their
    logits (see the module docstring)."""
    z = z.float()
    others = z.scatter(1, indices, float('-inf'))
    return torch.logsumexp(others, dim=1) - math.log(z.shape[1] - indices.shape[1])


def encode(value, layout: dict) -> List[np.ndarray]:
    """Numpy arrays (one per stored array, rows first) of one batch's value."""
    _, parts = _components(value, '?')
    out = []
    for x, comp in zip(parts, layout['components']):
        x = x.detach()
        if comp['encoding'] == 'topk':
            top, idx = x.float().topk(comp['k'], dim=1)
            fill = topk_fill(x, idx)
            for (_, dtype, _), a in zip(comp['arrays'], (top, idx, fill)):
                out.append(a.cpu().numpy().astype(dtype))
        else:
            (_, dtype, _), = comp['arrays']
            out.append(x.cpu().numpy().astype(dtype, copy=False))
    return out


def decode(arrays: List[np.ndarray], layout: dict, device) -> object:
    """The value a point gives, rebuilt from its arrays (float32 for floating values)."""
    parts, i = [], 0
    for comp in layout['components']:
        if comp['encoding'] == 'topk':
            top, idx, fill = (torch.from_numpy(np.array(a)) for a in arrays[i:i + 3])
            i += 3
            z = fill.float()[:, None].expand(len(fill), comp['classes']).clone()
            z.scatter_(1, idx.long(), top.float())
            parts.append(z.to(device))
        else:
            x = torch.from_numpy(np.array(arrays[i]))
            i += 1
            want = getattr(torch, comp['dtype'])
            if x.dtype != want:
                x = x.to(torch.float32 if want.is_floating_point else want)
            parts.append(x.to(device))
    return parts[0] if layout['struct'] == 'tensor' else (
        tuple(parts) if layout['struct'] == 'tuple' else parts)


def _array_path(folder, teacher, rank, point_i, comp_j, name) -> str:
    return osp.join(folder, teacher, f'r{rank}.p{point_i}.c{comp_j}.{name}.bin')


def _index_path(folder, teacher, rank) -> str:
    return osp.join(folder, teacher, f'r{rank}.index.npz')


def _arrays(layout: dict):
    """(component index, array name, dtype, per-sample shape) of a point's stored arrays."""
    for j, comp in enumerate(layout['components']):
        for name, dtype, shape in comp['arrays']:
            yield j, name, np.dtype(dtype), tuple(shape)


# ---------------------------------------------------------------------- writing
class CacheWriter:
    """Writes one rank's shard of a cache (``rank`` of ``world_size``; files named by rank, so
    ranks never write the same file). :meth:`add` per batch and teacher, :meth:`close` at the
    end; :func:`write_meta` (rank 0, after every rank closed) makes the cache complete."""

    def __init__(self, folder: str, rank: int = 0, dtype: str = 'fp32',
                 topk: Optional[int] = None):
        if dtype not in STORAGE_DTYPES:
            raise ValueError(f'dtype={dtype!r}: valid values are {list(STORAGE_DTYPES)}.')
        if topk is not None and (not isinstance(topk, int) or topk < 1):
            raise ValueError(f'topk={topk!r}: give a positive number of logits to keep.')
        self.folder, self.rank, self.dtype, self.topk = folder, rank, dtype, topk
        self.shards = {}  # teacher -> dict(points, layouts, files, digests, ...)

    def add(self, teacher: str, digest: bytes, values: Dict[str, object]) -> None:
        shard = self.shards.get(teacher)
        if shard is None:
            shard = self._open(teacher, values)
        if list(values) != shard['points']:
            raise TeacherCacheError(f'Teacher {teacher!r}: points {list(values)} differ from '
                                    f"the first batch's {shard['points']}.")
        rows, crcs = None, []
        for i, point in enumerate(shard['points']):
            layout = shard['layouts'][point]
            arrays = encode(values[point], layout)
            for a, (j, name, dtype, shape), f in zip(arrays, _arrays(layout), shard['files'][i]):
                if a.shape[1:] != shape or a.dtype != dtype:
                    raise TeacherCacheError(
                        f'Teacher {teacher!r}, point {point!r}: a batch gives per-sample '
                        f'shape {a.shape[1:]} ({a.dtype}), the first gave {shape} ({dtype}). '
                        'Only values whose per-sample shape is fixed can be cached (logits, '
                        'features of fixed-size inputs); run this teacher live.')
                if rows is None:
                    rows = a.shape[0]
                elif a.shape[0] != rows:
                    raise TeacherCacheError(f'Teacher {teacher!r}, point {point!r}: {a.shape[0]}'
                                            f' rows, other points gave {rows}.')
                data = np.ascontiguousarray(a).tobytes()
                f.write(data)
                crcs.append(zlib.crc32(data))
        shard['digests'].append(np.frombuffer(digest, np.uint8))
        shard['starts'].append(shard['rows'])
        shard['counts'].append(rows)
        shard['crcs'].append(crcs)
        shard['rows'] += rows

    def _open(self, teacher: str, values: Dict[str, object]) -> dict:
        os.makedirs(osp.join(self.folder, teacher), exist_ok=True)
        points = list(values)
        layouts = {p: layout_of(values[p], p, self.dtype, self.topk) for p in points}
        files = [[open(_array_path(self.folder, teacher, self.rank, i, j, name), 'wb')
                  for j, name, _, _ in _arrays(layouts[p])] for i, p in enumerate(points)]
        shard = dict(points=points, layouts=layouts, files=files, digests=[], starts=[],
                     counts=[], crcs=[], rows=0)
        self.shards[teacher] = shard
        return shard

    def bytes_per_row(self, teacher: str) -> int:
        shard = self.shards[teacher]
        return sum(dtype.itemsize * int(np.prod(shape)) for p in shard['points']
                   for _, _, dtype, shape in _arrays(shard['layouts'][p]))

    def close(self, distiller) -> Dict[str, dict]:
        """Flush every file and write the index; returns this shard's summary per teacher,
        with the torch generator state each teacher's build left in ``distiller`` (a cached
        teacher puts it back: see :class:`~.teacher_kinds.CachedTeacher`)."""
        summary = {}
        for teacher, shard in self.shards.items():
            for files in shard['files']:
                for f in files:
                    f.flush()
                    os.fsync(f.fileno())
                    f.close()
            index = _index_path(self.folder, teacher, self.rank)
            with open(index + '.tmp', 'wb') as f:
                np.savez(f, digests=np.stack(shard['digests']).astype(np.uint8),
                         starts=np.asarray(shard['starts'], np.int64),
                         counts=np.asarray(shard['counts'], np.int64),
                         crcs=np.asarray(shard['crcs'], np.uint32))
            os.replace(index + '.tmp', index)
            rng = distiller.teacher_info(teacher).rng_after_build
            summary[teacher] = dict(points=shard['points'], layouts=shard['layouts'],
                                    rows=shard['rows'], batches=len(shard['starts']),
                                    bytes_per_row=self.bytes_per_row(teacher),
                                    rng_after_build=base64.b64encode(
                                        rng.numpy().tobytes()).decode())
        return summary


def method_refusal(block: str, method, topk_points: Sequence[str]) -> Optional[str]:
    """Why the method of ``block`` cannot read a cached teacher's values (None: it can):
    it reads the teacher's own modules (``bind_teachers``: CrossKD, OFD, SRRL), or it reads
    ``topk_points`` (stored as top-K logits) without being a method that reads logits
    (``reads_teacher_logits = True``)."""
    from ..methods.base import BaseDistillMethod
    name = type(method).__name__
    if type(method).bind_teachers is not BaseDistillMethod.bind_teachers:
        return (f"Block {block!r}: {name} reads the teacher's own modules (bind_teachers), "
                'which a cache does not hold')
    if topk_points and not getattr(method, 'reads_teacher_logits', False):
        return (f'Block {block!r}: the cache stores {sorted(topk_points)} as top-K logits, '
                'which only a method that reads logits may use (LogitKD, DKD, RLD, DIST, '
                f'EnsembleKD, WSLD: reads_teacher_logits=True), not {name}')
    return None


def cache_meta(shards: List[Dict[str, dict]], fingerprints: Dict[str, dict], **info) -> dict:
    """``meta.json``'s content from every rank's :meth:`CacheWriter.close` summary and each
    teacher's fingerprint; ``info`` adds the run's fields (``run_fingerprint``, ``storage``,
    ...)."""
    teachers = {}
    for name, fingerprint in fingerprints.items():
        first = shards[0][name]
        teachers[name] = dict(
            points=first['points'], layouts=first['layouts'], fingerprint=fingerprint,
            shards=[dict(rows=s[name]['rows'], batches=s[name]['batches'],
                         rng_after_build=s[name]['rng_after_build']) for s in shards],
            bytes_per_sample=first['bytes_per_row'])
    return dict(format=FORMAT, world_size=len(shards), teachers=teachers, **info)


def write_meta(folder: str, meta: dict) -> None:
    """Write ``meta.json`` atomically: its presence marks the cache complete."""
    path = osp.join(folder, META)
    with open(path + '.tmp', 'w') as f:
        json.dump(meta, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(path + '.tmp', path)


def read_meta(folder: str, where: str) -> dict:
    if not isinstance(folder, str) or not osp.isdir(folder):
        raise TeacherCacheError(f'{where}.cache={folder!r} is not a folder: give the --out '
                                'folder of tools/cache_teacher.py.')
    path = osp.join(folder, META)
    if not osp.isfile(path):
        raise TeacherCacheError(
            f'{where}.cache={folder!r} is incomplete: it has no {META} (written last by '
            'tools/cache_teacher.py, so the tool did not finish). Rebuild it.')
    size = osp.getsize(path)
    if size > MAX_META_BYTES:
        raise TeacherCacheError(f'{where}: {path} is {size:,} bytes, more than a cache\'s '
                                f'{META} ({MAX_META_BYTES:,} at most).')
    try:
        with open(path) as f:
            meta = json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
        raise TeacherCacheError(f'{where}: {path} is damaged (not JSON: {e}).') from None
    if not isinstance(meta, dict) or meta.get('format') != FORMAT:
        found = meta.get('format') if isinstance(meta, dict) else type(meta).__name__
        raise TeacherCacheError(f'{where}: {path} is not an mmkd teacher cache of format '
                                f'{FORMAT!r} (found {found!r}).')
    return meta


# ---------------------------------------------------------------------- reading
class CacheReader:
    """One teacher's values from one rank's shard of a cache, memory-mapped.

    Args:
        folder (str): the cache.
        teacher (str): the teacher's name in the cache.
        rank, world_size (int): this process's; the cache must have been built with the same
            world size (each rank reads the shard its rank wrote).
        where (str): the setting, for messages (``'model.teachers.kd'``).
    """

    def __init__(self, folder: str, teacher: str, rank: int, world_size: int, where: str):
        self.folder, self.teacher, self.where = folder, teacher, where
        meta = read_meta(folder, where)
        self.meta = meta
        teachers = meta.get('teachers', {})
        if teacher not in teachers:
            raise TeacherCacheError(f'{where}: the cache {folder!r} holds the teachers '
                                    f'{sorted(teachers)}, not {teacher!r}.')
        if meta.get('world_size') != world_size:
            raise TeacherCacheError(
                f'{where}: the cache {folder!r} was built for world_size '
                f'{meta.get("world_size")} (one shard per rank), this run has {world_size}; '
                'rebuild it with the launcher and process count of training.')
        entry = teachers[teacher]
        self.points = list(entry['points'])
        self.layouts = entry['layouts']
        shard = entry['shards'][rank]
        self.rows = int(shard['rows'])
        try:
            self.rng_after_build = torch.frombuffer(
                bytearray(base64.b64decode(shard['rng_after_build'], validate=True)),
                dtype=torch.uint8)
        except (KeyError, TypeError, ValueError) as e:
            raise TeacherCacheError(f'{where}: {META} of {folder!r} is damaged: no valid '
                                    f'rng_after_build for rank {rank} ({e}).') from None
        self.fingerprint = entry['fingerprint']
        index_path = _index_path(folder, teacher, rank)
        try:
            with np.load(index_path, allow_pickle=False) as index:
                digests, self.starts = index['digests'], index['starts']
                self.counts, self.crcs = index['counts'], index['crcs']
        except (OSError, ValueError, KeyError, zlib.error, zipfile.BadZipFile) as e:
            raise TeacherCacheError(f'{where}: the cache index {index_path} is missing or '
                                    f'damaged ({type(e).__name__}: {e}).') from None
        n = len(self.starts)
        if digests.shape != (n, 16) or len(self.counts) != n or int(self.counts.sum()) != \
                self.rows or n != int(shard['batches']):
            raise TeacherCacheError(f'{where}: the cache index {index_path} does not match '
                                    f'{META} ({n} batches, {int(self.counts.sum())} rows; '
                                    f"{META} says {shard['batches']} and {self.rows}).")
        self.index = {bytes(d): i for i, d in enumerate(digests)}
        self.maps = []  # per point: list of memmaps, in _arrays order
        for i, point in enumerate(self.points):
            maps = []
            for j, name, dtype, shape in _arrays(self.layouts[point]):
                path = _array_path(folder, teacher, rank, i, j, name)
                want = self.rows * dtype.itemsize * int(np.prod(shape))
                size = osp.getsize(path) if osp.isfile(path) else None
                if size != want:
                    raise TeacherCacheError(
                        f'{where}: the cache file {path} is '
                        f'{"missing" if size is None else f"{size:,} bytes"}, {META} says '
                        f'{want:,} ({self.rows} rows): the cache is damaged or incomplete. '
                        'Rebuild it.')
                maps.append(np.memmap(path, dtype=dtype, mode='r', shape=(self.rows, *shape))
                            if self.rows else np.zeros((0, *shape), dtype))
            self.maps.append(maps)

    def _rows(self, start: int, count: int, crcs=None) -> Dict[str, object]:
        out, k = {}, 0
        for point, maps in zip(self.points, self.maps):
            arrays = []
            for m in maps:
                a = m[start:start + count]
                if crcs is not None and zlib.crc32(np.ascontiguousarray(a).tobytes()) != \
                        int(crcs[k]):
                    raise TeacherCacheError(
                        f'{self.where}: the cache {self.folder!r} is damaged: the rows '
                        f'{start}..{start + count - 1} of point {point!r} fail their CRC-32 '
                        f'check ({m.filename}). Rebuild it.')
                arrays.append(a)
                k += 1
            out[point] = arrays
        return out

    def read(self, digest: bytes, device) -> Dict[str, object]:
        """``{point: value}`` of the batch with this digest."""
        i = self.index.get(digest)
        if i is None:
            raise TeacherCacheError(
                f'{self.where}: this training batch is not in the teacher cache '
                f'{self.folder!r}: the batches differ from those it was built on (another '
                'seed, data pipeline, sampler, batch size, number of workers, epochs, world '
                'size, or a transform drawing from the generator the student also draws '
                'from). Rebuild the cache with tools/cache_teacher.py for this config.')
        rows = self._rows(int(self.starts[i]), int(self.counts[i]), self.crcs[i])
        return {p: decode(a, self.layouts[p], device) for p, a in rows.items()}

    def example(self, n: int, device=None) -> Dict[str, object]:
        """Values of ``n`` stored samples (the first ones, repeated if fewer): what the
        distiller's dry run sizes the methods with."""
        if self.rows == 0:
            raise TeacherCacheError(f'{self.where}: the cache {self.folder!r} holds no sample.')
        idx = np.arange(n) % self.rows
        out = {}
        for point, maps in zip(self.points, self.maps):
            out[point] = decode([np.asarray(m[idx]) for m in maps], self.layouts[point], device)
        return out
