"""The one input policy of the package: how codec, saliency models and purification filters read an image.

Documented for users in ``docs/images.md``. In short:

* Colour order: every API reads 3-channel numpy arrays as **RGB** (and a filter's 4-channel input as RGBA) unless
  told ``color_order="BGR"`` (OpenCV's ``cv2.imread`` order). PIL images carry their own mode, so
  ``color_order`` does not apply to them.
* PIL modes: "RGB" and "L" as they are; "1" -> "L"; "P" -> "RGB"; "YCbCr" -> "RGB" (Pillow's exact conversion);
  16-bit "I;16*" -> 8 bits as round(v / 257) (0..65535 onto 0..255); "F" must hold values in [0, 255] (Pillow's
  8-bit scale) and is rounded; "I" (32-bit), "CMYK" (needs an ICC transform), "LAB" and "HSV" are refused with
  the conversion to use.
* Alpha ("RGBA", "LA", "PA", "RGBa", "La", "P" with transparency, HxWx4 arrays) is refused, as Pillow's own JPEG
  writer does: JPEG has no alpha and what lies under transparent pixels is undefined, so any silent choice
  changes the picture. :func:`flatten_alpha` composites onto a background of the caller's choice (white by
  default) in one call.
* numpy arrays: HxW or HxWx1 (grey), HxWx3 (colour); uint8 (0..255), uint16 (0..65535, scaled as "I;16") or
  float32/float64 in [0, 1] (NaN, infinity and values outside [0, 1] are refused).
* The caller's image is never modified; read-only arrays (``np.frombuffer`` of bytes, read-only memory maps) are
  accepted as input. Output buffers (``dst=``) must be writeable.

The purification filters are array-to-array transforms that keep shape and dtype (uint8 or float32, 1-4
channels), so they use this module's checks (colour order, float range, writeable output) and take numpy arrays
only; a 4th channel is filtered like the others where the filter is channel-wise and refused where colour matters.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

COLOR_ORDERS = ("RGB", "BGR")
DEFAULT_COLOR_ORDER = "RGB"
ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")
_REFUSED_MODES = {
    "I": "32-bit integer images have no defined white level; scale them to 8 bits (mode 'L') or 16 bits "
         "(mode 'I;16') yourself",
    "CMYK": "converting CMYK needs the image's ICC profile (Pillow's plain convert('RGB') ignores it); convert "
            "to RGB with PIL.ImageCms first",
    "LAB": "convert it to 'RGB' first (e.g. with PIL.ImageCms)",
    "HSV": "convert it to 'RGB' first",
}


def check_color_order(color_order) -> str:
    """``color_order`` as "RGB" or "BGR" (case-insensitive), or a ValueError naming the parameter."""
    order = color_order.upper() if isinstance(color_order, str) else None
    if order not in COLOR_ORDERS:
        raise ValueError(f"color_order must be 'RGB' (Pillow, scikit-image, torchvision) or 'BGR' (OpenCV), "
                         f"got {color_order!r}")
    return order


def check_float_range(array: np.ndarray, what: str = "image") -> None:
    """Float pixel values must be finite and lie in [0, 1]."""
    low, high = float(array.min()), float(array.max())
    if not (np.isfinite(low) and np.isfinite(high)):
        raise ValueError(f"{what} contains NaN or infinite values")
    if low < 0.0 or high > 1.0:
        raise ValueError(f"float {what} values must lie in [0, 1], got [{low:.4g}, {high:.4g}]")


def check_writable(dst, name: str = "dst") -> None:
    """An output buffer must be a writeable numpy array (not a view of ``bytes``, a read-only memory map or an
    array with ``writeable=False``): writing there would change memory the caller promised not to change."""
    if not isinstance(dst, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(dst).__name__}")
    if not dst.flags.writeable:
        raise ValueError(f"{name} is read-only (flags.writeable is False, e.g. np.frombuffer of bytes or a "
                         f"read-only memory map); pass a writeable array or {name}=None")


def to_array(image, color_order: str = DEFAULT_COLOR_ORDER, *, keep_gray: bool = False,
             uint8: bool = False) -> np.ndarray:
    """``image`` (PIL or numpy) under the package policy, as an RGB array (a view of the caller's array when no
    conversion is needed; never written to).

    Returns HxWx3 in RGB order, or HxW for grey input when ``keep_gray``; uint8, or float32 in [0, 1] for float
    input unless ``uint8`` (then rounded to uint8). ``color_order`` says how 3-channel numpy arrays are ordered.
    """
    order = check_color_order(color_order)
    if isinstance(image, Image.Image):
        array = pil_to_array(image)
    elif isinstance(image, np.ndarray):
        array = numpy_to_array(image, order)
    else:
        raise TypeError(f"image must be a PIL.Image.Image or a numpy array, got {type(image).__name__}")
    if uint8 and array.dtype != np.uint8:
        array = np.rint(array * np.float32(255.0)).astype(np.uint8)
    if array.ndim == 2 and not keep_gray:
        array = np.repeat(array[:, :, None], 3, axis=2)
    return array


def pil_to_array(image: Image.Image) -> np.ndarray:
    """A PIL image as a uint8 HxW (grey) or HxWx3 (RGB) array under the mode policy of this module."""
    if image.width == 0 or image.height == 0:
        raise ValueError(f"image is empty (size {image.size})")
    mode = image.mode
    if mode in _REFUSED_MODES:
        raise ValueError(f"PIL mode {mode!r} is not supported: {_REFUSED_MODES[mode]}")
    if mode in ("L", "RGB"):
        return np.asarray(image)
    if mode == "1":
        return np.asarray(image.convert("L"))
    if mode in ALPHA_MODES or (mode == "P" and "transparency" in image.info):
        raise ValueError(f"image mode {mode!r}{' with transparency' if mode == 'P' else ''} has an alpha channel, "
                         "which JPEG and the saliency models cannot use; composite it onto a background first: "
                         "semantic_jpeg.image_input.flatten_alpha(image) (white) or image.convert('RGB') to drop it")
    if mode in ("P", "YCbCr", "RGBX"):
        return np.asarray(image.convert("RGB"))
    if mode in SIXTEEN_BIT_MODES:
        return _from_16_bit(np.asarray(image))
    if mode == "F":
        values = np.asarray(image, dtype=np.float64)
        low, high = float(values.min()), float(values.max())
        if not (np.isfinite(low) and np.isfinite(high)) or low < 0 or high > 255:
            raise ValueError(f"PIL mode 'F' images must hold finite values in [0, 255] (Pillow's 8-bit scale), "
                             f"got [{low:.4g}, {high:.4g}]")
        return np.rint(values).astype(np.uint8)
    raise ValueError(f"PIL mode {mode!r} is not supported; convert it to 'RGB' or 'L' first")


def numpy_to_array(array: np.ndarray, color_order: str = DEFAULT_COLOR_ORDER) -> np.ndarray:
    """A numpy image as HxW or HxWx3 RGB, uint8 or float32 in [0, 1], under the policy of this module."""
    order = check_color_order(color_order)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 3 and array.shape[2] == 4:
        raise ValueError(f"image array of shape {array.shape} has an alpha channel, which JPEG and the saliency "
                         "models cannot use; composite it onto a background first: "
                         "semantic_jpeg.image_input.flatten_alpha(array, color_order=...) (white), or drop it")
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)):
        raise ValueError(f"image array must be HxW, HxWx1 or HxWx3, got shape {array.shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"image is empty (shape {array.shape})")
    if array.dtype.kind in "uf" and not array.dtype.isnative:  # e.g. ">u2" from a big-endian file
        array = array.astype(array.dtype.newbyteorder("="))
    if array.dtype == np.uint16:
        array = _from_16_bit(array)
    elif array.dtype in (np.float32, np.float64):
        check_float_range(array)
        array = array.astype(np.float32, copy=False)
    elif array.dtype != np.uint8:
        raise TypeError(f"image dtype must be uint8, uint16 or float32/float64 in [0, 1], got {array.dtype}")
    return array[:, :, ::-1] if array.ndim == 3 and order == "BGR" else array


def _from_16_bit(values: np.ndarray) -> np.ndarray:
    """0..65535 onto 0..255: round(v / 257) (257 = 65535 / 255, so 0 -> 0, 65535 -> 255, v * 257 -> v)."""
    return ((values.astype(np.uint32) + 128) // 257).astype(np.uint8)


def flatten_alpha(image, background=(255, 255, 255), color_order: str = DEFAULT_COLOR_ORDER):
    """Composite an image with alpha onto an opaque ``background`` colour (white by default).

    PIL images with alpha ("RGBA", "LA", "PA", "RGBa", "La", "P" with transparency) give an "RGB" PIL image;
    HxWx4 numpy arrays (uint8, or float in [0, 1]; RGBA, or BGRA with ``color_order="BGR"``) give HxWx3 in the
    same order and dtype. Anything else comes back unchanged. ``background`` is (R, G, B) in 0..255.
    """
    background = tuple(int(v) for v in background)
    if len(background) != 3 or not all(0 <= v <= 255 for v in background):
        raise ValueError(f"background must be an (R, G, B) triple in 0..255, got {background!r}")
    if isinstance(image, Image.Image):
        if image.mode not in ALPHA_MODES and not (image.mode == "P" and "transparency" in image.info):
            return image
        canvas = Image.new("RGBA", image.size, (*background, 255))
        return Image.alpha_composite(canvas, image.convert("RGBA")).convert("RGB")
    if isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 4:
        colour = np.array(background[::-1] if check_color_order(color_order) == "BGR" else background, np.float64)
        if image.dtype == np.uint8:
            alpha = image[:, :, 3:].astype(np.float64) / 255.0
            return np.rint(image[:, :, :3] * alpha + colour * (1.0 - alpha)).astype(np.uint8)
        check_float_range(image)
        alpha = image[:, :, 3:]
        return (image[:, :, :3] * alpha + colour / 255.0 * (1.0 - alpha)).astype(image.dtype)
    return image


def require_onnxruntime(purpose: str) -> None:
    """ImportError naming the extra to install when onnxruntime (the saliency models' runtime) is missing."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise ImportError(f"{purpose} needs onnxruntime, which is not installed: pip install 'semantic_jpeg[cpu]' "
                          "(or 'semantic_jpeg[gpu]' for onnxruntime-gpu), or pass your own saliency map") from exc


__all__ = ["COLOR_ORDERS", "DEFAULT_COLOR_ORDER", "check_color_order", "check_float_range", "check_writable",
           "flatten_alpha", "numpy_to_array", "pil_to_array", "require_onnxruntime", "to_array"]
