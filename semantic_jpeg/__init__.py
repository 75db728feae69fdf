"""semantic_jpeg: saliency-guided JPEG compression, adversarial purification filters, and their models.

Headline API: :func:`semantic_jpeg.encode`. Importing the package registers the save-only Pillow format
``"SEMJPEG"`` and the opt-in ``semantic=True`` option of Pillow's JPEG save. The runtime (codec, filters,
ONNX inference) never imports torch.
"""
from .codec import EncodeResult, RateControlWarning, encode, register_pillow_plugin

from ._version import __version__
__all__ = ["encode", "EncodeResult", "RateControlWarning", "register_pillow_plugin", "__version__"]

register_pillow_plugin()
