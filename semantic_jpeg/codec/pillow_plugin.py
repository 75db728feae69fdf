"""Pillow integration, following pillow-heif's ``register_heif_opener()`` pattern: importing adds, never replaces.

- A save-only format ``"SEMJPEG"``, registered when ``semantic_jpeg`` is imported (it only adds a format name):
  ``img.save("x.jpg", format="SEMJPEG", **options)`` with the options of :func:`semantic_jpeg.encode`.
  MIME type image/jpeg.
- ``semantic=True`` on ordinary JPEG saves, ``img.save("x.jpg", semantic=True, saliency=...)``, only after an
  explicit :func:`register_pillow_plugin` call: it wraps Pillow's JPEG saver, and importing a library must not
  change other code's ``img.save(..., "JPEG")``. Every save without ``semantic=True`` still runs Pillow's own
  JPEG saver unchanged; :func:`unregister_pillow_plugin` puts Pillow's saver back.

Pillow registers its JPEG plugin lazily (``Image.preinit``); :func:`register_pillow_plugin` imports that plugin
first so that its registration has happened and cannot later replace our wrapper.
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
    setattr(save, "semantic_jpeg_wraps", pillow_save)  # noqa: B010  (marks the wrapper; read by hasattr)
    return save


def _encode_to(im, fp, options):
    from .encoder import encode
    encode(im, fp, **options)


def register_semjpeg_format() -> None:
    """Register the save-only "SEMJPEG" format (idempotent). ``import semantic_jpeg`` calls this; it adds a
    format and changes no existing one."""
    Image.register_save(FORMAT, _save_semjpeg)
    Image.register_mime(FORMAT, "image/jpeg")


def register_pillow_plugin() -> None:
    """Register the "SEMJPEG" format and the ``semantic=True`` option of Pillow's JPEG save (idempotent).

    Call it once in your program to write ``img.save("x.jpg", semantic=True, ...)``; saves without
    ``semantic=True`` keep running Pillow's own JPEG saver."""
    from PIL import JpegImagePlugin  # noqa: F401  (makes Pillow's own JPEG registration happen now)
    register_semjpeg_format()
    current = Image.SAVE["JPEG"]
    if not hasattr(current, "semantic_jpeg_wraps"):
        Image.register_save("JPEG", _wrap_jpeg_save(current))


def unregister_pillow_plugin() -> None:
    """Undo :func:`register_pillow_plugin`'s ``semantic=True`` hook: Pillow's own JPEG saver is registered again
    (the "SEMJPEG" format stays)."""
    current = Image.SAVE.get("JPEG")
    if current is not None and hasattr(current, "semantic_jpeg_wraps"):
        Image.register_save("JPEG", current.semantic_jpeg_wraps)
