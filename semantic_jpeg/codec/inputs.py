"""Turning the caller's image and saliency arguments into the arrays the encoder works on.

Images follow the package's one input policy (:mod:`semantic_jpeg.image_input`, documented in docs/images.md):
PIL modes, alpha (composited over white), 16-bit and float input, and the colour order of numpy arrays
(``color_order="RGB"`` by default, ``"BGR"`` for OpenCV arrays). The encoder receives uint8 HxW (grey) or HxWx3 RGB.
"""
import numpy as np
from PIL import Image

from ..image_input import require_onnxruntime, to_array
from ..native import as_pointer, lib

MAX_JPEG_SIDE = 65500  # JPEG's 16-bit frame dimensions, as libjpeg enforces


def image_to_array(image, color_order="RGB") -> np.ndarray:
    """uint8 HxW or HxWx3 RGB array, C-contiguous (the caller's array itself when it already is one: the
    encoder only reads it)."""
    if isinstance(image, Image.Image):
        check_size(image.width, image.height)  # before converting: a huge image is refused without a copy
    elif not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a PIL.Image.Image or a numpy array, got {type(image).__name__}")
    array = np.ascontiguousarray(to_array(image, color_order, keep_gray=True, uint8=True))
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


def saliency_to_array(saliency, rgb: np.ndarray) -> np.ndarray:
    """float32 HxW map in [0, 1] at the image's size from the ``saliency`` argument of ``encode``.

    None -> the shipped fixation-prediction ("gaze") model, :func:`semantic_jpeg.saliency_map`; an object with
    ``msroi_map`` -> that model's MS-ROI map; a callable ->
    called with the RGB uint8 array; an array or PIL "L"/"F" image -> used as is (resized bilinearly when its
    aspect ratio matches the image's; uint8 maps are divided by 255)."""
    height, width = rgb.shape[:2]
    if saliency is None:
        require_onnxruntime("the default saliency map (saliency=None)")
        from ..onnx_models.gaze_model import default_gaze_model
        saliency = default_gaze_model().saliency_map(rgb, color_order="RGB")
    elif hasattr(saliency, "msroi_map"):
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
        saliency = saliency.astype(np.float32)
        saliency /= 255.0  # in place: one float copy of the map at a time (the encoder's peak memory)
    elif not np.issubdtype(saliency.dtype, np.floating):
        raise TypeError(f"saliency map must be float in [0, 1] or uint8, got {saliency.dtype}")
    elif saliency.dtype != np.float32 and np.isfinite(saliency).all() and (saliency.min() < 0 or saliency.max() > 1):
        # checked before the float32 cast, which would turn 1e300 into infinity
        raise ValueError(f"saliency map values must lie in [0, 1], got values in [{saliency.min()}, {saliency.max()}]")
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
        saliency = np.asarray(Image.fromarray(saliency, mode="F").resize((width, height), Image.Resampling.BILINEAR))
        saliency = np.clip(saliency, 0.0, 1.0)
    return np.ascontiguousarray(saliency, dtype=np.float32)
