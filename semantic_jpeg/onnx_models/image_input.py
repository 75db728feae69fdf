"""Converting user images (PIL or numpy) to the network's normalised NCHW input.

Images are read under the package's one input policy, :mod:`semantic_jpeg.image_input` (docs/images.md):
RGB unless ``color_order="BGR"``, alpha composited over white, 16-bit scaled to 8 bits, floats in [0, 1].
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from semantic_jpeg.image_input import COLOR_ORDERS, check_color_order, numpy_to_array, to_array
from semantic_jpeg.native import as_output_pointer, as_pointer, lib

__all__ = ["COLOR_ORDERS", "check_color_order", "check_image_array", "to_rgb_array", "working_shape", "resize_rgb",
           "resize_map"]
# Pillow first box-reduces by an integer factor while the image stays >= 2x the target, then filters:
# much faster on big frames, same quality for a saliency network input
REDUCING_GAP = 2.0


def check_image_array(image, color_order: str = "RGB") -> np.ndarray:
    """Validate a numpy image and return it HxW (grey) or HxWx3 in RGB order, uint8 or float32 in [0, 1]
    (a view when possible), under the package's input policy (:mod:`semantic_jpeg.image_input`)."""
    check_color_order(color_order)
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a PIL.Image or a numpy array, got {type(image).__name__}")
    return numpy_to_array(image, color_order)


def to_rgb_array(image, color_order: str = "RGB") -> np.ndarray:
    """The image as an RGB array, HxWx3, uint8 or float32 in [0, 1] (a view when possible), under the package's
    input policy (:mod:`semantic_jpeg.image_input`): PIL modes converted (alpha composited over white, 16-bit
    scaled to 8 bits), numpy arrays HxW, HxWx1, HxWx3 or HxWx4 in ``color_order`` ("RGB" or OpenCV's "BGR")."""
    return to_array(image, color_order)


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
        resized = Image.fromarray(np.ascontiguousarray(rgb)).resize((width, height), Image.Resampling.BILINEAR,
                                                                    reducing_gap=REDUCING_GAP)
        return np.asarray(resized, dtype=np.float32)
    channels = [np.asarray(Image.fromarray(np.ascontiguousarray(rgb[:, :, c])).resize((width, height),
                                                                                      Image.Resampling.BILINEAR,
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
                                      as_output_pointer(out, np.float32), height, width,
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
                                                                                        Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.float32)
