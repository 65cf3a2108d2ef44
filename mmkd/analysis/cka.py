r"""Centred kernel alignment (CKA): how alike two layers' representations of the same inputs are.

For ``n`` inputs, a layer gives features ``X`` of shape (n, p) (each sample's activation
flattened) and another ``Y`` of shape (n, q); ``p`` and ``q`` may differ. With Gram matrices
``K = k(X, X)`` and ``L = l(Y, Y)`` (n, n) and the centring matrix ``H = I - 11^T / n``,
Kornblith et al. ("Similarity of Neural Network Representations Revisited", ICML 2019) define

    HSIC(K, L) = tr(K H L H) / (n - 1)^2
    CKA(K, L)  = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))          in [0, 1]

For the linear kernel ``K = X X^T`` and column-centred ``X``, ``Y`` this is

    CKA = ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F),

invariant to orthogonal transforms and isotropic scaling of either side, but not to arbitrary
invertible linear maps (an invariance they argue against: with p >= n it
makes every pair of representations alike). The RBF kernel is
``k(x_i, x_j) = exp(-||x_i - x_j||^2 / (2 sigma^2))`` with ``sigma`` a fraction of the median
distance between examples (see :func:`gram_rbf`).

:func:`cka` is this *full* estimator: it needs every sample's features at once (an (n, n)
Gram per point). For large sets, Nguyen, Raghu and Kornblith ("Do Wide and Deep Networks Learn
the Same Things?", ICLR 2021) average the unbiased HSIC estimator ``HSIC_1`` of
Song et al. ("Feature Selection via Dependence Maximization", JMLR 2012) over ``k``
minibatches (:func:`hsic1`, :func:`minibatch_cka`):

    CKA_minibatch = mean_i HSIC_1(K_i, L_i) / sqrt(mean_i HSIC_1(K_i, K_i) mean_i HSIC_1(L_i, L_i))

which needs only one minibatch in memory. :class:`CKAAccumulator` takes the batches of many
named points at once and keeps what either estimator needs for every (row, column) pair.

Everything is computed in float64 (the features, kept in at least float32, are cast before
any product: the Gram entries sum ``p`` products and HSIC sums ``n^2`` of them).
"""
import math
from typing import Dict, Iterable, List, Sequence, Tuple

import torch

KERNELS = ('linear', 'rbf')
ESTIMATORS = ('full', 'minibatch')
#: Default RBF bandwidth as a fraction of the median distance. Kornblith et al. report RBF CKA
#: with sigma = 0.2, 0.4 and 0.8 times the median distance and call the
#: fraction of the median "the heuristic we use in the paper" in their code (the ``threshold``
#: of ``gram_rbf`` in google-research/representation_similarity/Demo.ipynb); 0.8 is the widest
#: of the three, the closest to linear CKA (RBF CKA tends to linear CKA as sigma grows).
RBF_FRACTION = 0.8
#: The most samples :class:`CKAAccumulator` keeps for the full estimator. Its memory is
#: n x (sum of the points' p) x 4 bytes for the features plus one n x n float64 Gram (8 n^2
#: bytes: 800 MB at 10,000) per point, and its time O(n^2 p) per point; beyond a few thousand
#: samples the minibatch estimator is the one to use.
MAX_FULL_SAMPLES = 10_000


def flatten_features(x: torch.Tensor) -> torch.Tensor:
    """(n, ...) -> (n, p) float64: each sample's activation as one vector."""
    if not isinstance(x, torch.Tensor) or x.dim() < 1:
        raise TypeError(f'CKA features must be a tensor with a leading sample dimension, got '
                        f'{type(x).__name__}{tuple(getattr(x, "shape", ()))}.')
    return x.detach().reshape(x.shape[0], -1).to(torch.float64)


def point_features(label: str, value, num_samples: int) -> List[Tuple[str, torch.Tensor]]:
    """A recorded value as CKA points: ``[(label, (n, ...) tensor)]``.

    A tensor whose first dimension is the batch's ``num_samples`` is one point. A tuple or
    list (FPN levels, the calls of a module run several times, a backbone's ``out_indices``)
    gives one point per element, named ``label[i]`` (recursively: ``label[i][j]``), each
    flattened on its own: levels of different resolutions are different representations, and
    concatenating them would let the largest level dominate the linear kernel (its Gram is the
    sum of the levels' Grams). Anything else (None, a dict, a tensor without the sample
    dimension first) is a ValueError naming the point: record a module whose output is
    batch-first, or index it (``'neck[0]'``).
    """
    if isinstance(value, torch.Tensor):
        if value.dim() == 0 or value.shape[0] != num_samples:
            raise ValueError(f'CKA point {label!r}: a tensor of shape {tuple(value.shape)}, '
                             f'whose first dimension is not the batch\'s {num_samples} samples;'
                             ' CKA needs one feature vector per sample (a batch-first output).')
        return [(label, value)]
    if isinstance(value, (tuple, list)) and value:
        out = []
        for i, v in enumerate(value):
            out += point_features(f'{label}[{i}]', v, num_samples)
        return out
    raise ValueError(f'CKA point {label!r}: the module gives {type(value).__name__}'
                     f'{" of length 0" if isinstance(value, (tuple, list)) else ""}, not a '
                     'tensor or a tuple/list of tensors; record another module.')


def gram_linear(x: torch.Tensor) -> torch.Tensor:
    """Linear-kernel Gram matrix ``K = X X^T``: (n, p) -> (n, n), float64."""
    x = flatten_features(x)
    return x @ x.T


def gram_rbf(x: torch.Tensor, fraction: float = RBF_FRACTION) -> torch.Tensor:
    """RBF-kernel Gram matrix ``K_ij = exp(-d_ij^2 / (2 sigma^2))``: (n, p) -> (n, n), float64.

    ``d_ij = ||x_i - x_j||`` and ``sigma^2 = fraction^2 * median(d^2)``, the median taken over
    all n^2 entries of the squared-distance matrix (its zero diagonal included), exactly as
    the authors' ``gram_rbf`` (Kornblith et al. 2019, google-research/representation_similarity);
    ``sqrt(median(d^2))`` is the median distance (up to how an even count's middle pair is
    averaged). All-equal samples (median 0) give a Gram of ones (no information: CKA NaN).
    """
    if not fraction > 0:
        raise ValueError(f'rbf fraction must be > 0 (sigma = fraction x median distance), got '
                         f'{fraction!r}.')
    x = flatten_features(x)
    dots = x @ x.T
    sq_norms = torch.diagonal(dots)
    sq_dist = (sq_norms[:, None] + sq_norms[None, :] - 2 * dots).clamp_min(0)
    values = sq_dist.flatten().sort().values  # numpy's median: the middle pair's midpoint
    mid = values.numel() // 2
    median = values[mid] if values.numel() % 2 else (values[mid - 1] + values[mid]) / 2
    if median <= 0:
        return torch.ones_like(sq_dist)
    return torch.exp(-sq_dist / (2 * fraction ** 2 * median))


def gram(x: torch.Tensor, kernel: str = 'linear', rbf_fraction: float = RBF_FRACTION):
    """The Gram matrix (n, n) of features ``x`` (n, ...) for ``kernel`` in :data:`KERNELS`."""
    if kernel == 'linear':
        return gram_linear(x)
    if kernel == 'rbf':
        return gram_rbf(x, rbf_fraction)
    raise ValueError(f'Unknown CKA kernel {kernel!r}; valid kernels are {list(KERNELS)}.')


def center_gram(k: torch.Tensor) -> torch.Tensor:
    """``H K H`` with ``H = I - 11^T / n``: subtract row and column means, add the grand mean.
    For a linear kernel this is the Gram matrix of the column-centred features."""
    return k - k.mean(0, keepdim=True) - k.mean(1, keepdim=True) + k.mean()


def hsic(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:  # noqa: E741
    """Biased HSIC estimator ``tr(K H L H) / (n - 1)^2`` (Gretton et al. 2005; Kornblith et
    al.) of two (n, n) Gram matrices; ``tr(K H L H) = <H K H, H L H>_F`` (H idempotent)."""
    n = k.shape[0]
    return (center_gram(k) * center_gram(l)).sum() / (n - 1) ** 2


def cka_from_grams(k: torch.Tensor, l: torch.Tensor) -> float:  # noqa: E741
    """``HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))`` for (n, n) Gram matrices (NaN when a side
    has no variance: a constant representation is alike nothing)."""
    kc, lc = center_gram(k.to(torch.float64)), center_gram(l.to(torch.float64))
    denom = torch.sqrt((kc * kc).sum() * (lc * lc).sum())
    return float((kc * lc).sum() / denom) if denom > 0 else math.nan


def cka(x: torch.Tensor, y: torch.Tensor, kernel: str = 'linear',
        rbf_fraction: float = RBF_FRACTION) -> float:
    """Full-sample CKA between features ``x`` (n, ...) and ``y`` (n, ...) of the same n inputs
    (flattened per sample to (n, p) and (n, q)); see the module docstring for the formula."""
    if x.shape[0] != y.shape[0]:
        raise ValueError(f'CKA compares two representations of the same inputs: got {x.shape[0]}'
                         f' and {y.shape[0]} samples.')
    if x.shape[0] < 2:
        raise ValueError(f'CKA needs at least 2 samples, got {x.shape[0]}.')
    return cka_from_grams(gram(x, kernel, rbf_fraction), gram(y, kernel, rbf_fraction))


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA, ``||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)`` on column-centred X, Y."""
    return cka(x, y, 'linear')


def rbf_cka(x: torch.Tensor, y: torch.Tensor, fraction: float = RBF_FRACTION) -> float:
    """RBF CKA with ``sigma = fraction x`` the median distance (:func:`gram_rbf`)."""
    return cka(x, y, 'rbf', fraction)


def _hsic1_parts(k: torch.Tensor):
    """(K with zero diagonal, its row sums K~1, its total 1^T K~ 1) for :func:`hsic1`."""
    kt = k.to(torch.float64).clone()
    kt.fill_diagonal_(0)
    rows = kt.sum(1)
    return kt, rows, rows.sum()


def _hsic1_from_parts(a, b) -> torch.Tensor:
    (kt, krows, ksum), (lt, lrows, lsum) = a, b
    n = kt.shape[0]
    # tr(K~ L~) = sum_ij K~_ij L~_ji = sum(K~ * L~) (symmetric); 1^T K~ L~ 1 = (K~1) . (L~1).
    trace = (kt * lt).sum()
    return (trace + ksum * lsum / ((n - 1) * (n - 2))
            - 2.0 / (n - 2) * (krows @ lrows)) / (n * (n - 3))


def hsic1(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:  # noqa: E741
    """Unbiased HSIC estimator (Song et al. 2012; Nguyen et al. 2021) of two
    symmetric (n, n) Gram matrices, n >= 4; ``K~``, ``L~`` are K, L with zero diagonals:

        HSIC_1 = [tr(K~ L~) + (1^T K~ 1)(1^T L~ 1) / ((n-1)(n-2)) - 2/(n-2) 1^T K~ L~ 1]
                 / (n (n - 3))
    """
    n = k.shape[0]
    if n < 4:
        raise ValueError(f'The unbiased HSIC estimator needs at least 4 samples (it divides by '
                         f'n(n-3)), got {n}.')
    return _hsic1_from_parts(_hsic1_parts(k), _hsic1_parts(l))


def minibatch_cka(batches: Iterable[Tuple[torch.Tensor, torch.Tensor]], kernel: str = 'linear',
                  rbf_fraction: float = RBF_FRACTION) -> float:
    """Minibatch CKA (Nguyen et al. 2021) over ``(x_i, y_i)`` minibatches of (n_i, ...)
    features, each n_i >= 4: ``mean HSIC_1(K_i, L_i) / sqrt(mean HSIC_1(K_i, K_i) mean
    HSIC_1(L_i, L_i))``; an RBF kernel takes each minibatch's own median distance."""
    acc = CKAAccumulator(['x'], ['y'], 'minibatch', kernel, rbf_fraction)
    for x, y in batches:
        acc.update({'x': x, 'y': y})
    return float(acc.compute()[0, 0])


class CKAAccumulator:
    """CKA between every row point and every column point, fed one batch at a time.

    Args:
        rows (Sequence[str]): names of the row points (e.g. the student's).
        cols (Sequence[str]): names of the column points (e.g. the teachers'); a name may be in
            both (its own Gram is computed once).
        estimator (str): ``'full'`` keeps every sample's features (at least float32; cast to
            float64 for the products) and computes :func:`cka` over all of them in
            :meth:`compute`; ``'minibatch'`` computes, for each batch as it comes, the Gram
            matrix of every point and the sums of ``HSIC_1`` for every (row, column) pair and
            every point with itself, and keeps only these sums (the batches are the minibatches
            of Nguyen et al.; one with fewer than 4 samples is skipped and counted in
            :attr:`skipped`).
        kernel (str): ``'linear'`` or ``'rbf'``.
        rbf_fraction (float): the RBF bandwidth as a fraction of the median distance
            (:func:`gram_rbf`); per minibatch with the minibatch estimator.
        max_samples (int): the full estimator refuses more samples than this (its memory grows
            with n; see :data:`MAX_FULL_SAMPLES`). Default :data:`MAX_FULL_SAMPLES`.

    :meth:`update` takes ``{name: (n, ...) tensor}`` with every row and column name, the same n;
    :meth:`compute` returns the (len(rows), len(cols)) float64 matrix.
    """

    def __init__(self, rows: Sequence[str], cols: Sequence[str], estimator: str = 'full',
                 kernel: str = 'linear', rbf_fraction: float = RBF_FRACTION,
                 max_samples: int = MAX_FULL_SAMPLES):
        if estimator not in ESTIMATORS:
            raise ValueError(f'Unknown CKA estimator {estimator!r}; valid estimators are '
                             f'{list(ESTIMATORS)}.')
        if kernel not in KERNELS:
            raise ValueError(f'Unknown CKA kernel {kernel!r}; valid kernels are {list(KERNELS)}.')
        if not rows or not cols:
            raise ValueError(f'CKA needs at least one row and one column point, got rows '
                             f'{list(rows)} and columns {list(cols)}.')
        if kernel == 'rbf' and not rbf_fraction > 0:
            raise ValueError(f'rbf_fraction must be > 0, got {rbf_fraction!r}.')
        self.rows, self.cols = list(rows), list(cols)
        self.names: List[str] = list(dict.fromkeys(self.rows + self.cols))
        self.estimator, self.kernel, self.rbf_fraction = estimator, kernel, rbf_fraction
        self.max_samples = max_samples
        self.num_samples = 0
        self.dims: Dict[str, int] = {}
        self.skipped = 0  # minibatches with < 4 samples (minibatch estimator)
        self.num_batches = 0  # minibatches used (minibatch estimator)
        self._features: Dict[str, List[torch.Tensor]] = {n: [] for n in self.names}
        self._cross = torch.zeros(len(self.rows), len(self.cols), dtype=torch.float64)
        self._self: Dict[str, float] = {n: 0.0 for n in self.names}

    def _check(self, features: Dict[str, torch.Tensor]) -> int:
        missing = [n for n in self.names if n not in features]
        if missing:
            raise KeyError(f'CKA batch lacks points {missing}; expected {self.names}.')
        sizes = {n: features[n].shape[0] for n in self.names}
        if len(set(sizes.values())) != 1:
            raise ValueError(f'CKA batch: the points have different numbers of samples {sizes}.')
        for n in self.names:
            p = features[n][0].numel()
            if self.dims.setdefault(n, p) != p:
                raise ValueError(f'CKA point {n!r}: {p} features per sample in this batch, '
                                 f'{self.dims[n]} before.')
        return next(iter(sizes.values()))

    def update(self, features: Dict[str, torch.Tensor]) -> None:
        """Add one batch: ``features[name]`` is (n, ...) for every row and column name."""
        n = self._check(features)
        if self.estimator == 'full':
            if self.num_samples + n > self.max_samples:
                raise ValueError(f'The full CKA estimator keeps every sample; '
                                 f'{self.num_samples + n} exceeds max_samples='
                                 f'{self.max_samples}. Use the minibatch estimator for large '
                                 'sets.')
            for name in self.names:
                x = features[name].detach()
                dtype = torch.promote_types(x.dtype, torch.float32)  # exact, half the memory
                self._features[name].append(x.reshape(n, -1).to('cpu', dtype))
            self.num_samples += n
            return
        if n < 4:
            self.skipped += 1
            return
        parts = {name: _hsic1_parts(gram(features[name], self.kernel, self.rbf_fraction))
                 for name in self.names}
        for i, r in enumerate(self.rows):
            for j, c in enumerate(self.cols):
                self._cross[i, j] += float(_hsic1_from_parts(parts[r], parts[c]))
        for name in self.names:
            self._self[name] += float(_hsic1_from_parts(parts[name], parts[name]))
        self.num_samples += n
        self.num_batches += 1

    def compute(self) -> torch.Tensor:
        """The (len(rows), len(cols)) float64 CKA matrix (NaN where a point has no variance)."""
        out = torch.full((len(self.rows), len(self.cols)), math.nan, dtype=torch.float64)
        if self.estimator == 'full':
            if self.num_samples < 2:
                raise ValueError(f'CKA needs at least 2 samples, got {self.num_samples}.')
            centred = {}
            for name in self.names:
                x = torch.cat(self._features[name])
                centred[name] = center_gram(gram(x, self.kernel, self.rbf_fraction))
            norms = {name: float(torch.sqrt((k * k).sum())) for name, k in centred.items()}
            for i, r in enumerate(self.rows):
                for j, c in enumerate(self.cols):
                    if norms[r] > 0 and norms[c] > 0:
                        out[i, j] = float((centred[r] * centred[c]).sum()) / (norms[r] * norms[c])
            return out
        if self.num_batches == 0:
            raise ValueError('The minibatch CKA estimator got no minibatch of at least 4 '
                             f'samples ({self.skipped} smaller ones skipped).')
        for i, r in enumerate(self.rows):
            for j, c in enumerate(self.cols):
                denom = self._self[r] * self._self[c]
                if denom > 0:
                    out[i, j] = float(self._cross[i, j]) / math.sqrt(denom)
        return out


def accumulate(batches: Iterable[Dict[str, torch.Tensor]], rows: Sequence[str],
               cols: Sequence[str], **kwargs) -> torch.Tensor:
    """Feed ``batches`` to a :class:`CKAAccumulator` (``kwargs`` its arguments); its matrix."""
    acc = CKAAccumulator(rows, cols, **kwargs)
    for b in batches:
        acc.update(b)
    return acc.compute()
