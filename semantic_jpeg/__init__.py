"""semantic_jpeg: saliency-guided JPEG compression, adversarial purification filters, and their models.

Headline API: :func:`semantic_jpeg.encode`. Importing the package registers the save-only Pillow format
``"SEMJPEG"`` (it adds a format and changes no existing one); ``semantic=True`` on Pillow's JPEG save is opt-in:
call :func:`semantic_jpeg.register_pillow_plugin` once. Images follow one input policy (RGB unless
``color_order="BGR"``; see :mod:`semantic_jpeg.image_input`). The runtime (codec, filters, ONNX inference) never
imports torch.
"""
from ._version import __version__
from .codec import EncodeResult, RateControlWarning, encode, register_pillow_plugin
from .codec.batch import encode_many
from .codec.pillow_plugin import register_semjpeg_format, unregister_pillow_plugin
from .onnx_models.gaze_model import log_density, saliency_map

__all__ = ["encode", "encode_many", "EncodeResult", "RateControlWarning", "register_pillow_plugin",
           "unregister_pillow_plugin", "saliency_map", "log_density", "__version__"]

register_semjpeg_format()
