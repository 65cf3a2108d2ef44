"""DIST: "Knowledge Distillation from A Stronger Teacher" (Huang et al., NeurIPS 2022).

DIST matches *relations* instead of exact probabilities: the Pearson correlation between student
and teacher class probabilities of each sample (inter-class relation), and the correlation between
the two models' probabilities of each class across the batch (intra-class relation).
"""
import torch


def pearson_correlation(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Pearson correlation of the rows of ``a`` and ``b`` (both (M, K)) -> (M,)."""
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    return (a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1) + eps)


def dist_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, tau: float = 1.0,
              beta: float = 1.0, gamma: float = 1.0, dim: int = 1) -> torch.Tensor:
    """``tau^2 * (beta * (1 - mean_i rho(p_s[i], p_t[i])) + gamma * (1 - mean_c rho(p_s[:, c], p_t[:, c])))``

    with ``p = softmax(z / tau)`` over classes and rho the Pearson correlation.
    Dense maps (N, C, *spatial) treat every position as a sample: the inter-class term
    correlates the C probabilities of each pixel, the intra-class term correlates each class's
    probabilities over all N*H*W pixels of the batch (as DIST's segmentation setting does).

    Args:
        student_logits, teacher_logits: (N, C) or (N, C, *spatial), same shape.
        tau (float): temperature. beta / gamma: inter- / intra-class weights (paper: 1, 1).
        dim (int): class dimension. Default 1.
    Returns:
        scalar tensor (float32 or wider: half-precision inputs are promoted).
    """
    dtype = torch.promote_types(student_logits.dtype, torch.float32)
    num_classes = student_logits.shape[dim]
    p_s = (student_logits.to(dtype) / tau).softmax(dim=dim).movedim(dim, -1)
    p_t = (teacher_logits.to(dtype) / tau).softmax(dim=dim).movedim(dim, -1)
    p_s, p_t = p_s.reshape(-1, num_classes), p_t.reshape(-1, num_classes)  # (samples, C)
    inter = 1 - pearson_correlation(p_s, p_t).mean()
    intra = 1 - pearson_correlation(p_s.t(), p_t.t()).mean()
    return tau ** 2 * (beta * inter + gamma * intra)
