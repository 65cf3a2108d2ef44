"""Soft-label losses shared by the logit methods."""
import torch
import torch.nn.functional as F


def kl_from_log_probs(log_p: torch.Tensor, log_q: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """``KL(p || q)`` summed over ``dim`` from log-probabilities, unreduced elsewhere (shape of
    the input without ``dim``). The one place the soft-label methods form it."""
    return (log_p.exp() * (log_p - log_q)).sum(dim=dim)


def kl_divergence_with_temperature(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                                   tau: float = 1.0, dim: int = 1) -> torch.Tensor:
    """Hinton's KD loss: ``tau^2 * KL(softmax(t / tau) || softmax(s / tau))``.

    The KL is summed over the class dimension ``dim`` and averaged over every other position
    (samples, and pixels for dense maps), i.e. 'batchmean' for (N, C) logits. The ``tau^2``
    factor keeps gradient magnitudes independent of the temperature (Hinton et al., 2015).

    Args:
        student_logits, teacher_logits: (N, C) or (N, C, *spatial), same shape.
    Returns:
        scalar tensor.
    """
    # Half-precision logits (AMP) are promoted: softmax differences underflow in fp16.
    dtype = torch.promote_types(student_logits.dtype, torch.float32)
    log_p_s = F.log_softmax(student_logits.to(dtype) / tau, dim=dim)
    log_p_t = F.log_softmax(teacher_logits.to(dtype) / tau, dim=dim)
    return kl_from_log_probs(log_p_t, log_p_s, dim).mean() * tau ** 2


def standardize_logits(logits: torch.Tensor, dim: int = 1, eps: float = 1e-7) -> torch.Tensor:
    """Logit standardisation (Sun et al., "Logit Standardization in Knowledge Distillation",
    CVPR 2024): ``(z - mean(z)) / (std(z) + eps)`` along ``dim``, with the *unbiased* standard
    deviation and ``eps`` added to it, as the authors' code (sunshangquan/logit-standardization-KD,
    ``normalize``). The base temperature divides the result afterwards, as any logits.

    Degenerate inputs stay finite: constant logits (std 0) and a single class (no unbiased std)
    give zeros, i.e. a uniform distribution over the classes.
    """
    dtype = torch.promote_types(logits.dtype, torch.float32)
    z = logits.to(dtype)
    centred = z - z.mean(dim=dim, keepdim=True)
    if z.shape[dim] < 2:
        return centred  # zeros
    return centred / (z.std(dim=dim, keepdim=True) + eps)
