"""CRD: the authors' formulation (RepDistiller b84f547 ``crd/criterion.py`` CRDLoss, Embed,
ContrastLoss; ``crd/memory.py`` ContrastMemory; the same code as mdistiller a08d46f
``distillers/CRD.py``) written out, and the memory bank's state: indices, negatives, exact
resume and the 2-process (gloo) update."""
import math

import pytest
import torch

import mmkd.methods.crd  # noqa: F401  (registration)
from mmkd.methods.crd import CRD

from conftest import forked_ranks

# float64 throughout; the only differences from the authors' code are the order of a few
# float operations (a sum over the negatives in one call instead of through view(-1, 1)).
TOL = dict(rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------ the authors' formulation
class AuthorsCRD:
    """RepDistiller's CRDLoss with a ContrastMemory given the indices ``idx`` (N, K + 1),
    written out: Embed (linear + Normalize(2)), ContrastMemory.forward, ContrastLoss."""

    def __init__(self, embed_s, embed_t, memory_v1, memory_v2, K, T, momentum, n_data):
        self.embed_s, self.embed_t = embed_s, embed_t
        self.memory_v1, self.memory_v2 = memory_v1.clone(), memory_v2.clone()
        self.K, self.T, self.momentum, self.n_data = K, T, momentum, n_data
        self.Z_v1 = self.Z_v2 = -1.0

    @staticmethod
    def normalize(x):
        return x.div(x.pow(2).sum(1, keepdim=True).pow(1. / 2))

    def contrast_loss(self, x):
        eps = 1e-7
        bsz = x.shape[0]
        m = x.size(1) - 1
        Pn = 1 / float(self.n_data)
        P_pos = x.select(1, 0)
        log_D1 = torch.div(P_pos, P_pos.add(m * Pn + eps)).log_()
        P_neg = x.narrow(1, 1, m)
        log_D0 = torch.div(P_neg.clone().fill_(m * Pn), P_neg.add(m * Pn + eps)).log_()
        return - (log_D1.sum(0) + log_D0.view(-1, 1).sum(0)) / bsz

    def __call__(self, f_s, f_t, y, idx):
        v1 = self.normalize(self.embed_s(f_s.view(f_s.shape[0], -1)))
        v2 = self.normalize(self.embed_t(f_t.view(f_t.shape[0], -1)))
        K, T, momentum = self.K, self.T, self.momentum
        batchSize, inputSize = v1.size(0), self.memory_v1.size(1)
        outputSize = self.memory_v1.size(0)
        weight_v1 = torch.index_select(self.memory_v1, 0, idx.view(-1)).detach()
        weight_v1 = weight_v1.view(batchSize, K + 1, inputSize)
        out_v2 = torch.exp(torch.div(torch.bmm(weight_v1, v2.view(batchSize, inputSize, 1)), T))
        weight_v2 = torch.index_select(self.memory_v2, 0, idx.view(-1)).detach()
        weight_v2 = weight_v2.view(batchSize, K + 1, inputSize)
        out_v1 = torch.exp(torch.div(torch.bmm(weight_v2, v1.view(batchSize, inputSize, 1)), T))
        if self.Z_v1 < 0:
            self.Z_v1 = (out_v1.mean() * outputSize).item()
        if self.Z_v2 < 0:
            self.Z_v2 = (out_v2.mean() * outputSize).item()
        out_v1 = torch.div(out_v1, self.Z_v1).contiguous()
        out_v2 = torch.div(out_v2, self.Z_v2).contiguous()
        with torch.no_grad():
            for memory, v in ((self.memory_v1, v1), (self.memory_v2, v2)):
                l_pos = torch.index_select(memory, 0, y.view(-1))
                l_pos.mul_(momentum)
                l_pos.add_(torch.mul(v, 1 - momentum))
                l_norm = l_pos.pow(2).sum(1, keepdim=True).pow(0.5)
                memory.index_copy_(0, y, l_pos.div(l_norm))
        return self.contrast_loss(out_v1) + self.contrast_loss(out_v2)


# ------------------------------------------------------------------ helpers
def samples(idx, labels):
    from mmpretrain.structures import DataSample
    return [DataSample(metainfo=dict(sample_idx=int(i))).set_gt_label(int(c))
            for i, c in zip(idx, labels)]


def built(n_data=40, k=7, ds=12, dt=20, seed=0, **kwargs):
    torch.manual_seed(seed)
    method = CRD(num_samples=n_data, nce_k=k, feat_dim=8, **kwargs)
    method.build(torch.zeros(2, ds), torch.zeros(2, dt))
    return method


def step_inputs(step, n=6, ds=12, dt=20, n_data=40, dtype=torch.float32):
    g = torch.Generator().manual_seed(100 + step)
    s = torch.randn(n, ds, generator=g, dtype=dtype)
    t = torch.randn(n, dt, generator=g, dtype=dtype)
    idx = torch.randperm(n_data, generator=g)[:n]
    labels = idx % 5
    return s, t, idx, labels


# ------------------------------------------------------------------ fidelity
def test_crd_equals_the_authors_loss_gradient_and_banks_over_steps():
    method = built().double()
    ref = AuthorsCRD(method.embed_student, method.embed_teacher,  # the same modules
                     method.memory_student.clone(), method.memory_teacher.clone(),
                     K=7, T=0.07, momentum=0.5, n_data=40)
    g = torch.Generator().manual_seed(5)
    for step in range(3):  # Z set by the first step; later steps read the updated banks
        s, t, idx, labels = step_inputs(step, dtype=torch.float64)
        contrast = torch.cat([idx[:, None], torch.randint(0, 40, (6, 7), generator=g)], 1)
        s1 = s.clone().requires_grad_()
        out = method(s1, t, samples(idx, labels), contrast_idx=contrast)
        method.zero_grad()
        out['loss_crd'].backward()
        grads = [p.grad.clone() for p in method.parameters()]
        s2 = s.clone().requires_grad_()
        method.zero_grad()
        expected = ref(s2, t, idx, contrast)
        expected.sum().backward()
        torch.testing.assert_close(out['loss_crd'], expected.reshape(()), **TOL)
        torch.testing.assert_close(s1.grad, s2.grad, **TOL)
        for a, p in zip(grads, method.parameters()):  # the embedding heads' gradients
            torch.testing.assert_close(a, p.grad, **TOL)
        torch.testing.assert_close(method.memory_student, ref.memory_v1, **TOL)
        torch.testing.assert_close(method.memory_teacher, ref.memory_v2, **TOL)
        assert method.z.tolist() == pytest.approx([ref.Z_v1, ref.Z_v2], rel=1e-12)
        assert 'loss' not in 'crd_pos_cos' and torch.isfinite(out['crd_pos_cos'])


def test_crd_banks_start_uniform_as_the_authors_and_follow_the_seed():
    a, b, c = built(seed=3), built(seed=3), built(seed=4)
    stdv = 1.0 / math.sqrt(8 / 3)
    assert a.memory_student.abs().max() <= stdv and a.memory_student.min() < 0
    assert torch.equal(a.memory_student, b.memory_student)
    assert not torch.equal(a.memory_student, c.memory_student)
    keys = set(a.state_dict())
    assert {'memory_student', 'memory_teacher', 'labels', 'z'} <= keys, keys


def test_crd_negatives():
    torch.manual_seed(0)
    method = built(n_data=40, k=7)
    idx, labels = torch.arange(40), torch.arange(40) % 5
    method.labels.copy_(labels)  # every sample seen
    drawn = method.draw_negatives(idx[:10], labels[:10])
    assert drawn.shape == (10, 8) and torch.equal(drawn[:, 0], idx[:10])
    assert (labels[drawn[:, 1:]] != labels[:10, None]).all()  # the authors' 'exact' set
    assert len(set(drawn[0, 1:].tolist())) == 7  # without replacement (K <= 32 candidates)
    fresh = built(n_data=40, k=7)  # nothing seen: any index but the anchor
    drawn = fresh.draw_negatives(idx[:10], labels[:10])
    assert (drawn[:, 1:] != idx[:10, None]).all()
    uniform = built(n_data=40, k=7, negatives='uniform')
    drawn = uniform.draw_negatives(idx[:10], None)
    assert drawn.shape == (10, 8) and drawn.min() >= 0 and drawn.max() < 40
    # training fills the label buffer from the batch
    s, t, i, c = step_inputs(0)
    method = built()
    method(s, t, samples(i, c))
    assert torch.equal(method.labels[i], c) and (method.labels >= 0).sum() == 6


def test_crd_eval_mode_changes_no_state():
    method = built()
    method(*step_inputs(0)[:2], samples(*step_inputs(0)[2:]))  # sets Z
    state = {k: v.clone() for k, v in method.state_dict().items()}
    method.eval()
    s, t, idx, labels = step_inputs(1)
    method(s, t, samples(idx, labels))
    for k, v in method.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_crd_clear_errors():
    with pytest.raises(ValueError, match='nce_k .*num_samples'):
        CRD(num_samples=100, nce_k=100)
    method = built()
    s, t, idx, labels = step_inputs(0)
    from mmpretrain.structures import DataSample
    no_idx = [DataSample().set_gt_label(0) for _ in range(6)]
    with pytest.raises(ValueError, match='sample_idx.*PackInputs'):
        method(s, t, no_idx)
    with pytest.raises(ValueError, match='num_samples=40'):
        method(s, t, samples(idx + 40, labels))
    with pytest.raises(ValueError, match='levels'):
        method((s, s), t, samples(idx, labels))


def test_crd_digits_dataset_and_pack_inputs_carry_sample_idx():
    from mmpretrain.datasets.transforms import PackInputs
    from mmkd.datasets.digits import DigitsDataset
    ds = DigitsDataset(split='train', img_size=16, pipeline=[PackInputs()])
    item = ds[7]
    assert item['data_samples'].sample_idx == 7
    assert len(ds) == 1347


# ------------------------------------------------------------------ exact resume
def run_steps(method, steps):
    out = []
    for step in steps:
        s, t, idx, labels = step_inputs(step)
        loss = method(s.requires_grad_(), t, samples(idx, labels))['loss_crd']
        loss.backward()
        out.append(loss.detach())
    return out


def test_crd_resume_is_bit_identical(tmp_path):
    torch.manual_seed(11)  # the run's seed: negatives drawn from the default generator
    whole = built(seed=1)
    losses = run_steps(whole, range(5))
    torch.manual_seed(11)
    first = built(seed=1)
    head = run_steps(first, range(3))
    # a checkpoint: the method's state dict and (mmkd.hooks.random_state) the RNG state
    torch.save(dict(state=first.state_dict(), rng=torch.get_rng_state()), tmp_path / 'c.pth')
    ckpt = torch.load(tmp_path / 'c.pth')
    resumed = built(seed=99)  # another initialisation, overwritten by the checkpoint
    resumed.load_state_dict(ckpt['state'])
    torch.set_rng_state(ckpt['rng'])
    tail = run_steps(resumed, range(3, 5))
    for a, b in zip(head + tail, losses):
        assert torch.equal(a, b)
    for k, v in whole.state_dict().items():
        assert torch.equal(resumed.state_dict()[k], v), k


# ------------------------------------------------------------------ two processes (gloo)
def two_rank_worker(rank, port, out):
    """One rank: the same banks and heads on both ranks, different batches (4 and 3 images)."""
    import torch.distributed as dist
    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank,
                            world_size=2)
    method = built(seed=1)
    torch.manual_seed(rank)
    for step in range(2):
        s, t, idx, labels = step_inputs(step, n=8)
        s, t, idx, labels = s[rank::2], t[rank::2], idx[rank::2], labels[rank::2]
        if rank == 1:
            s, t, idx, labels = s[:3], t[:3], idx[:3], labels[:3]
        method(s, t, samples(idx, labels))
    torch.save(method.state_dict(), out)
    dist.destroy_process_group()


def test_crd_two_processes_keep_identical_banks(tmp_path):
    ranks = forked_ranks(two_rank_worker, tmp_path, timeout=60)
    for k in ranks[0]:
        assert torch.equal(ranks[0][k], ranks[1][k]), k
    # one process over the concatenated batches (rank 0's images, then rank 1's)
    single = built(seed=1)
    for step in range(2):
        s, t, idx, labels = step_inputs(step, n=8)
        parts = [torch.arange(0, 8, 2), torch.arange(1, 8, 2)[:3]]
        # each rank's embeddings (as each rank computes them), one update over all of them
        e = [single_embeddings(single, s[p], t[p]) for p in parts]
        single._update(torch.cat([idx[p] for p in parts]), torch.cat([a for a, _ in e]),
                       torch.cat([b for _, b in e]), torch.cat([labels[p] for p in parts]))
    for k in ('memory_student', 'memory_teacher', 'labels'):
        assert torch.equal(single.state_dict()[k], ranks[0][k]), k
    assert (ranks[0]['z'] > 0).all()  # set once, from both ranks' first batches


def single_embeddings(method, s, t):
    from mmkd.methods.crd import _l2norm
    with torch.no_grad():
        return _l2norm(method.embed_student(s)), _l2norm(method.embed_teacher(t))


# ------------------------------------------------------------------ through the distiller
def test_crd_builds_and_trains_in_the_digits_distiller(teacher_ckpts):
    from conftest import batch, build, digits_cfg
    model = build(digits_cfg(teacher_ckpts['digits'], blocks=dict(
        crd=dict(student='neck', teacher='neck',
                 method=dict(type='CRD', num_samples=50, nce_k=16), loss_weight=0.8))))
    inputs, data_samples = batch(n=6, size=16)
    for i, s in enumerate(data_samples):
        s.set_metainfo(dict(sample_idx=3 * i))
    losses = model(inputs, data_samples, mode='loss')
    assert {'distill.crd.loss_crd', 'distill.crd.crd_pos_cos'} <= set(losses), sorted(losses)
    loss = sum(v for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(loss)
    loss.backward()
    method = model.blocks['crd'].method if hasattr(model, 'blocks') else None
    state = model.state_dict()
    assert any(k.endswith('crd.memory_student') for k in state), [k for k in state if 'crd' in k]
    del method
