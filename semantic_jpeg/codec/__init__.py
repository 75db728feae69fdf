"""Semantic JPEG codec: :func:`encode`, rate control, and the Pillow "SEMJPEG" plugin."""
from .encoder import DEFAULT_MODE, MODES, EncodeResult, RateControlWarning, encode
from .pillow_plugin import register_pillow_plugin

__all__ = ["encode", "EncodeResult", "RateControlWarning", "MODES", "DEFAULT_MODE", "register_pillow_plugin"]
