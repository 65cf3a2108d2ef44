"""A training "dataset" without images, for data-free distillation.

:class:`mmkd.distillers.DataFreeDistiller` trains on images its generator makes; the student
never sees a real training image. MMEngine's loops still iterate a dataloader, which here only
paces the run and makes the latents reproducible::

    LatentDataset(num_samples=S, seed=k)[i] = dict(inputs=tensor(k * 2**32 + i))   (int64)
    a batch of B seeds  ->  iterations per epoch = S // B (drop_last) or ceil(S / B)
    train step: latents z (B, latent_dim) ~ N(0, 1) from a torch.Generator seeded with
                (the batch's seeds, the runner's iteration)

So ``num_samples`` / ``batch_size`` sets the iterations per epoch (the authors' "epoch" of 120
(DAFL) or 50 (DFAD) generator steps), ``batch_size`` the number of images per step, and the
latents are fresh at every step (the iteration is in the seed, as the authors draw
``torch.randn`` each step), the same on every machine and on ``--resume``, and different on
each DDP rank (each rank has its own samples).

Any :class:`mmengine.dataset.DefaultSampler` works (shuffle or not). ``indices`` keeps the
first n (an int) or the listed samples, as MMEngine's datasets do.
"""
from typing import Optional, Sequence, Union

import torch
from torch.utils.data import Dataset

from ..registry import DATASETS

#: Seeds of dataset ``seed`` k are k * SEED_STRIDE + i: distinct across seeds.
SEED_STRIDE = 2 ** 32


@DATASETS.register_module()
class LatentDataset(Dataset):
    """``num_samples`` integer seeds (module docstring); no images, no labels.

    Args:
        num_samples (int): number of samples (seeds), >= 1.
        seed (int): which set of seeds, >= 0. Default 0.
        indices (int | sequence[int], optional): keep the first ``indices`` samples, or those
            listed. Default None: all.
        pipeline: ignored (accepted so that a base config's ``dataset.pipeline`` may stay).
        tune_fraction: ignored: the tuning split holds out real *images* (val/test read it);
            seeds have none to hold out. Accepted so that ``tools/benchmark/quality.py
            --tune``, which sets it on every loader, runs data-free configs.
    """

    METAINFO = dict(classes=None)

    def __init__(self, num_samples: int, seed: int = 0,
                 indices: Optional[Union[int, Sequence[int]]] = None, pipeline=None,
                 tune_fraction: float = 0.0, **kwargs):
        if kwargs:
            raise TypeError(f'LatentDataset got unknown arguments {sorted(kwargs)}; it takes '
                            'num_samples, seed and indices (it holds no images: the '
                            "DataFreeDistiller's generator makes them).")
        for name, value in (('num_samples', num_samples), ('seed', seed)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f'LatentDataset: {name} must be an integer, got {value!r}.')
        if num_samples < 1 or seed < 0:
            raise ValueError(f'LatentDataset: num_samples must be >= 1 and seed >= 0, got '
                             f'num_samples={num_samples}, seed={seed}.')
        self.seed = seed
        ids = list(range(num_samples))
        if indices is not None:
            if isinstance(indices, int) and not isinstance(indices, bool):
                ids = ids[:indices]
            else:
                ids = [ids[i] for i in indices]
        if not ids:
            raise ValueError('LatentDataset: no sample left (num_samples / indices).')
        self.ids = ids
        self.metainfo = dict(self.METAINFO)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict:
        return dict(inputs=torch.tensor(self.seed * SEED_STRIDE + self.ids[index],
                                        dtype=torch.int64))
