"""Converters from other distillation toolboxes' formats (MMRazor) to mmkd."""
from .mmrazor_config import ConversionError, ConversionResult, convert_config

__all__ = ['ConversionError', 'ConversionResult', 'convert_config']
