from .kd_loss import kl_divergence_with_temperature

__all__ = ['kl_divergence_with_temperature']
