"""semantic_jpeg: saliency-guided JPEG compression, adversarial purification filters, and their models.

Headline API: :func:`semantic_jpeg.encode`. Importing the package registers the save-only Pillow format
``"SEMJPEG"``. The runtime (codec, filters, ONNX inference) never imports torch.
"""
__version__ = "0.1.0"
