"""Turning the caller's image and saliency arguments into the arrays the encoder works on.

Image rule (documented in the README):
- PIL images: "L" and "RGB" are encoded as they are; "1" -> "L"; "P" without transparency -> "RGB";
  "I;16*" -> "L" (value / 257, rounded); "F" -> "L" (rounded, values must lie in [0, 255]).
  Images with alpha ("RGBA", "LA", "PA", "P" with transparency) are refused: JPEG has no alpha and silently
  dropping it changes the picture; composite onto a background first. "CMYK", "YCbCr", "LAB", "HSV", "I"
  are refused with the conversion to use.
- numpy arrays: HxW (grey) or HxWx3, uint8 or float in [0, 1]; ``color_order`` says whether 3-channel arrays
  are "RGB" (the default, as Pillow) or "BGR" (as OpenCV).
"""
import numpy as np
from PIL import Image

from ..native import as_pointer, lib
from ..onnx_models.image_input import check_image_array

MAX_JPEG_SIDE = 65500  # JPEG's 16-bit frame dimensions, as libjpeg enforces


def image_to_array(image, color_order="RGB") -> np.ndarray:
    """uint8 HxW or HxWx3 RGB array, C-contiguous (the caller's array itself when it already is one: the
    encoder only reads it)."""
    if isinstance(image, Image.Image):
        check_size(image.width, image.height)  # before converting: a huge image is refused without a copy
        array = _pil_to_array(image)
    elif isinstance(image, np.ndarray):
        array = _numpy_to_array(image, color_order)
    else:
        raise TypeError(f"image must be a PIL.Image.Image or a numpy array, got {type(image).__name__}")
    check_size(array.shape[1], array.shape[0])
    return array


def check_size(width, height):
    if width < 1 or height < 1:
        raise ValueError(f"image is empty ({width}x{height})")
    if width > MAX_JPEG_SIDE or height > MAX_JPEG_SIDE:
        raise ValueError(f"image is {width}x{height}; JPEG allows at most {MAX_JPEG_SIDE} pixels per side")
    limit = Image.MAX_IMAGE_PIXELS
    if limit and width * height > 2 * limit:
        raise Image.DecompressionBombError(
            f"image has {width * height} pixels, more than twice Pillow's MAX_IMAGE_PIXELS ({limit})")


def _pil_to_array(image: Image.Image) -> np.ndarray:
    mode = image.mode
    if mode in ("L", "RGB"):
        return np.array(image)
    if mode == "1":
        return np.array(image.convert("L"))
    if mode == "P":
        if "transparency" in image.info:
            raise ValueError("palette image with transparency: JPEG has no alpha; composite it onto a "
                             "background first (e.g. Image.alpha_composite) and pass an RGB image")
        return np.array(image.convert("RGB"))
    if mode.startswith("I;16"):
        return np.rint(np.array(image, dtype=np.float64) / 257.0).astype(np.uint8)
    if mode == "F":
        values = np.array(image, dtype=np.float64)
        if not np.isfinite(values).all() or values.min() < 0 or values.max() > 255:
            raise ValueError("mode 'F' image must hold finite values in [0, 255] to be encoded as 8-bit grey")
        return np.rint(values).astype(np.uint8)
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        raise ValueError(f"image mode {mode!r} has an alpha channel and JPEG cannot store alpha; composite it "
                         "onto a background first, or drop it explicitly with image.convert('RGB')")
    if mode == "CMYK":
        raise ValueError("CMYK images are not supported; convert to RGB (ideally with an ICC transform) first")
    raise ValueError(f"image mode {mode!r} is not supported; convert to 'RGB' or 'L' first")


def _numpy_to_array(array: np.ndarray, color_order: str) -> np.ndarray:
    array = check_image_array(array, color_order)
    if array.dtype != np.uint8:
        array = np.rint(array * 255.0).astype(np.uint8)
    return np.ascontiguousarray(array)


def saliency_to_array(saliency, rgb: np.ndarray) -> np.ndarray:
    """float32 HxW map in [0, 1] at the image's size from the ``saliency`` argument of ``encode``.

    None -> the shipped default MS-ROI model; an object with ``msroi_map`` -> that model; a callable ->
    called with the RGB uint8 array; an array or PIL "L"/"F" image -> used as is (resized bilinearly when its
    aspect ratio matches the image's; uint8 maps are divided by 255)."""
    height, width = rgb.shape[:2]
    if saliency is None:
        from ..onnx_models import default_model
        saliency = default_model()
    if hasattr(saliency, "msroi_map"):
        saliency = saliency.msroi_map(rgb, color_order="RGB")
    elif callable(saliency) and not isinstance(saliency, (np.ndarray, Image.Image)):
        saliency = saliency(rgb)
    if isinstance(saliency, Image.Image):
        if saliency.mode not in ("L", "F"):
            raise ValueError(f"saliency image must be mode 'L' or 'F', got {saliency.mode!r}")
        saliency = np.asarray(saliency)
    saliency = np.asarray(saliency)
    if saliency.ndim != 2:
        raise ValueError(f"saliency map must be HxW, got shape {saliency.shape}")
    if saliency.size == 0:
        raise ValueError("saliency map is empty")
    if saliency.dtype == np.uint8:
        saliency = saliency.astype(np.float32) / 255.0
    elif not np.issubdtype(saliency.dtype, np.floating):
        raise TypeError(f"saliency map must be float in [0, 1] or uint8, got {saliency.dtype}")
    saliency = np.ascontiguousarray(saliency, dtype=np.float32)
    outside = lib.filters_unit_interval_check(as_pointer(saliency, np.float32), saliency.size)  # one native pass
    if outside:
        problem = "NaN or infinity" if outside == 1 else f"values in [{saliency.min()}, {saliency.max()}]"
        raise ValueError(f"saliency map values must lie in [0, 1], got {problem}")
    if saliency.shape != (height, width):
        map_h, map_w = saliency.shape
        if abs(map_w / map_h - width / height) > 0.01 * (width / height) + 1.0 / min(map_h, map_w):
            raise ValueError(f"saliency map is {map_w}x{map_h} but the image is {width}x{height}: "
                             "the aspect ratios differ, so the map cannot belong to this image")
        saliency = np.asarray(Image.fromarray(saliency, mode="F").resize((width, height), Image.BILINEAR))
        saliency = np.clip(saliency, 0.0, 1.0)
    return np.ascontiguousarray(saliency, dtype=np.float32)
