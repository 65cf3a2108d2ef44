from .multi_token_head import MultiTokenClsHead

__all__ = ['MultiTokenClsHead']
