"""DDP wrapper for distillers: MMEngine's, with the distiller's non-finite-loss policy."""
from mmengine.model import MMDistributedDataParallel
from mmengine.model.utils import detect_anomalous_params

from ..registry import MODEL_WRAPPERS
from .distiller import Distiller, distiller_train_step


@MODEL_WRAPPERS.register_module()
class DistillerDataParallel(MMDistributedDataParallel):
    """``MMDistributedDataParallel`` whose ``train_step`` lets a distiller skip a step.

    With ``nonfinite_loss='skip'`` the distiller decides, identically on every rank (it
    all-reduces the decision), that a batch gave a non-finite loss; this wrapper then skips
    backward and the optimiser step on every rank, as the distiller's own ``train_step`` does
    in a single process. MMEngine's wrapper would call ``update_params`` regardless.
    ``tools/train.py`` selects it for distillers launched with a distributed launcher.
    """

    def train_step(self, data, optim_wrapper):
        if not isinstance(self.module, Distiller):
            return super().train_step(data, optim_wrapper)

        def after_update(parsed_loss):
            if self.detect_anomalous_params:
                detect_anomalous_params(parsed_loss, model=self)
        return distiller_train_step(self, self.module, data, optim_wrapper, after_update)
