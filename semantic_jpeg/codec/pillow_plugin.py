"""Pillow integration.

- A save-only format ``"SEMJPEG"``: ``img.save("x.jpg", format="SEMJPEG", **options)`` with the options of
  :func:`semantic_jpeg.encode` (``quality`` is the final quality Q_f, as there). MIME type image/jpeg.
- Opt-in ``semantic=True`` on ordinary JPEG saves: ``img.save("x.jpg", semantic=True, saliency=...)``. Pillow's
  own JPEG save runs unchanged for every save without ``semantic=True``.

Both are installed by :func:`register_pillow_plugin`, which importing ``semantic_jpeg`` calls. Pillow
registers its JPEG plugin lazily (``Image.preinit``); we import that plugin first so that its registration
has happened and cannot later replace our wrapper.
"""
from PIL import Image

FORMAT = "SEMJPEG"


def _save_semjpeg(im, fp, filename):
    _encode_to(im, fp, im.encoderinfo)


def _wrap_jpeg_save(pillow_save):
    def save(im, fp, filename):
        if not im.encoderinfo.get("semantic"):
            return pillow_save(im, fp, filename)
        options = {k: v for k, v in im.encoderinfo.items() if k != "semantic"}
        return _encode_to(im, fp, options)
    save.semantic_jpeg_wraps = pillow_save
    return save


def _encode_to(im, fp, options):
    from .encoder import encode
    encode(im, fp, **options)


def register_pillow_plugin() -> None:
    """Register the "SEMJPEG" save format and the ``semantic=True`` JPEG option (idempotent)."""
    from PIL import JpegImagePlugin  # noqa: F401  (makes Pillow's own JPEG registration happen now)
    Image.register_save(FORMAT, _save_semjpeg)
    Image.register_mime(FORMAT, "image/jpeg")
    current = Image.SAVE["JPEG"]
    if not hasattr(current, "semantic_jpeg_wraps"):
        Image.register_save("JPEG", _wrap_jpeg_save(current))
