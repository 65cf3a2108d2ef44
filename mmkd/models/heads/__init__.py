from .multi_token_head import MultiTokenClsHead
from .quality_head import QualityRegressionHead

__all__ = ['MultiTokenClsHead', 'QualityRegressionHead']
