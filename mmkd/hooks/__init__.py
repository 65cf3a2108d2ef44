from .random_state import RandomStateHook, capture_random_state, restore_random_state

__all__ = ['RandomStateHook', 'capture_random_state', 'restore_random_state']
