"""Checking and converting user images (PIL or numpy) to the network's normalised NCHW input."""
from __future__ import annotations

import numpy as np
from PIL import Image

from semantic_jpeg.native import as_pointer, lib

COLOR_ORDERS = ("RGB", "BGR")
# Pillow first box-reduces by an integer factor while the image stays >= 2x the target, then filters:
# much faster on big frames, same quality for a saliency network input
REDUCING_GAP = 2.0


def check_color_order(color_order: str) -> None:
    if color_order not in COLOR_ORDERS:
        raise ValueError(f"color_order must be 'RGB' or 'BGR', got {color_order!r}")


def check_image_array(image, color_order: str = "RGB") -> np.ndarray:
    """Validate a numpy image and return it HxW (gray) or HxWx3 in RGB order, uint8 or float in [0, 1], with
    its dtype kept (a view when possible). Shared by the saliency models and the codec."""
    check_color_order(color_order)
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a PIL.Image or a numpy array, got {type(image).__name__}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise ValueError(f"image array must be HxW, HxWx1 or HxWx3, got shape {image.shape}"
                         + (" (drop the alpha channel first)" if image.ndim == 3 and image.shape[2] == 4 else ""))
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image is empty (shape {image.shape})")
    if image.dtype in (np.float32, np.float64):
        if not np.isfinite(image).all():
            raise ValueError("image contains NaN or infinite values")
        low, high = float(image.min()), float(image.max())
        if low < 0.0 or high > 1.0:
            raise ValueError(f"float images must lie in [0, 1], got values in [{low:.4g}, {high:.4g}]")
    elif image.dtype != np.uint8:
        raise TypeError(f"image dtype must be uint8 or float32/float64 in [0, 1], got {image.dtype}")
    return image[:, :, ::-1] if color_order == "BGR" and image.ndim == 3 else image


def to_rgb_array(image, color_order: str = "RGB") -> np.ndarray:
    """Return the image as an RGB array, HxWx3, uint8 or float32 in [0, 1] (a view when possible).

    * ``PIL.Image``: modes with alpha (RGBA, LA, PA, P with transparency) are composited over white; other
      8-bit modes (L, P, CMYK, YCbCr, 1, ...) go through ``Image.convert("RGB")``. ``color_order`` is ignored.
      Modes I, I;16 and F (more than 8 bits) are refused: their scaling is ambiguous, convert them yourself.
    * numpy: uint8 (0..255) or float32/float64 in [0, 1]; shape HxW (gray), HxWx1 or HxWx3 with channels in
      ``color_order`` ("RGB" or "BGR", OpenCV's order).
    """
    check_color_order(color_order)
    if isinstance(image, Image.Image):
        return _pil_to_rgb(image)
    image = check_image_array(image, color_order)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return image if image.dtype == np.uint8 else image.astype(np.float32, copy=False)


def _pil_to_rgb(image: Image.Image) -> np.ndarray:
    if image.width == 0 or image.height == 0:
        raise ValueError(f"image is empty (size {image.size})")
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        raise ValueError(f"PIL mode {image.mode!r} has more than 8 bits per sample; convert it to 'RGB' or 'L' "
                         "with your own scaling first")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    return np.asarray(image.convert("RGB"))


def working_shape(height: int, width: int, working_size: int, multiple: int = 32) -> tuple[int, int]:
    """(h, w) with the longer side ``working_size`` and the aspect ratio kept, both rounded to ``multiple``."""
    if working_size < multiple or working_size % multiple:
        raise ValueError(f"working_size must be a positive multiple of {multiple}, got {working_size}")
    scale = working_size / max(height, width)
    return (max(multiple, int(round(height * scale / multiple)) * multiple),
            max(multiple, int(round(width * scale / multiple)) * multiple))


def resize_rgb(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize an RGB uint8 or float32 image to (height, width) with Pillow's antialiased bilinear filter;
    returns float32 in 0..255."""
    if rgb.shape[:2] == (height, width):
        out = rgb.astype(np.float32)
        return out * 255.0 if rgb.dtype != np.uint8 else out
    if rgb.dtype == np.uint8:
        resized = Image.fromarray(np.ascontiguousarray(rgb)).resize((width, height), Image.BILINEAR,
                                                                    reducing_gap=REDUCING_GAP)
        return np.asarray(resized, dtype=np.float32)
    channels = [np.asarray(Image.fromarray(np.ascontiguousarray(rgb[:, :, c])).resize((width, height),
                                                                                      Image.BILINEAR,
                                                                                      reducing_gap=REDUCING_GAP))
                for c in range(3)]
    return np.stack(channels, axis=2) * 255.0


def _blend_positions(size_in: int, size_out: int):
    """For each output position along one axis: the two input positions it blends and the weight of the
    second, with pixel centres aligned and edges clamped (what Pillow's BILINEAR filter does when enlarging)."""
    centre = np.clip((np.arange(size_out) + 0.5) * (size_in / size_out) - 0.5, 0, size_in - 1)
    first = np.floor(centre).astype(np.int32)
    second = np.minimum(first + 1, size_in - 1).astype(np.int32)
    return first, second, (centre - first).astype(np.float32)


def _enlarge(saliency: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear enlargement (native, separable, one output array)."""
    src = np.ascontiguousarray(saliency, dtype=np.float32)
    out = np.empty((height, width), np.float32)
    rows, cols = _blend_positions(src.shape[0], height), _blend_positions(src.shape[1], width)
    rc = lib.semjpeg_enlarge_bilinear(as_pointer(src, np.float32), src.shape[0], src.shape[1],
                                      as_pointer(out, np.float32), height, width,
                                      *(as_pointer(a, a.dtype) for a in rows + cols))
    if rc != 0:
        raise MemoryError("native map enlargement ran out of memory") if rc == -2 else RuntimeError(
            "native map enlargement refused its arguments")
    return out


def resize_map(saliency: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of a float32 map (pixel centres aligned, edges clamped) to (height, width).
    Enlarging (the usual case: a feature-resolution map to the image) blends neighbours along each axis
    (native); shrinking uses Pillow's antialiased bilinear filter."""
    if saliency.shape == (height, width):
        return saliency.astype(np.float32)
    if height >= saliency.shape[0] and width >= saliency.shape[1]:
        return _enlarge(saliency, height, width)
    resized = Image.fromarray(np.ascontiguousarray(saliency, dtype=np.float32)).resize((width, height),
                                                                                        Image.BILINEAR)
    return np.asarray(resized, dtype=np.float32)
