from .dist_loss import dist_loss, pearson_correlation
from .distances import DISTANCES, build_distance, mse_distance
from .kd_loss import kl_divergence_with_temperature, kl_from_log_probs, standardize_logits

__all__ = ['kl_divergence_with_temperature', 'kl_from_log_probs', 'standardize_logits',
           'dist_loss', 'pearson_correlation', 'build_distance', 'mse_distance', 'DISTANCES']
