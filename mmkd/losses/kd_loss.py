"""Soft-label losses shared by the logit methods."""
import torch
import torch.nn.functional as F


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
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=dim)
    return kl.mean() * tau ** 2
