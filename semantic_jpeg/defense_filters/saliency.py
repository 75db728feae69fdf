"""Saliency maps for the targeted filters: a user array, a callable, or one of the shipped models' maps.

``saliency`` may be
- an array (H, W) (or (N, H, W) for a batch) of floats in [0, 1] at the image's resolution;
- a callable ``f(image) -> (H, W)`` map;
- ``"rcam"`` (robust activation map, Prakash 2019 eq. 4.5, k=5), ``"msroi"`` (Prakash 2019 sec 2.3) or
  ``"aug-msroi"`` (sec 3.6), computed by :func:`semantic_jpeg.onnx_models.default_model` (imported lazily).
"""
from __future__ import annotations

import numpy as np

from semantic_jpeg.image_input import require_onnxruntime
from semantic_jpeg.native import as_pointer, lib

from ._conventions import images_of, spatial_shape, to_uint8

MODEL_MAPS = ("rcam", "msroi", "aug-msroi")


def model_map(kind: str, image: np.ndarray, *, color_order: str, seed=None) -> np.ndarray:
    """One map of the shipped saliency model for one HxWx3 image."""
    require_onnxruntime(f"saliency={kind!r}")
    from semantic_jpeg.onnx_models import default_model

    model = default_model()
    image = to_uint8(image)
    if kind == "rcam":
        return model.rcam_map(image, k=5, color_order=color_order)
    if kind == "msroi":
        return model.msroi_map(image, color_order=color_order)
    return model.aug_msroi_map(image, n=5, seed=seed, color_order=color_order)


def resolve_saliency(saliency, image: np.ndarray, *, color_order: str = "RGB", rng=None):
    """The map(s) for ``image`` as float32 in [0, 1], (H, W) or (N, H, W) for a batch; None stays None."""
    if saliency is None:
        return None
    if isinstance(saliency, str):
        kind = saliency.lower()
        if kind not in MODEL_MAPS:
            raise ValueError(f"unknown saliency {saliency!r}; use an array, a callable or one of {MODEL_MAPS}")
        if image.ndim < 3 or image.shape[-1] != 3:
            raise ValueError(f"model saliency maps need 3-channel images, got shape {image.shape}")
        maps = [model_map(kind, single, color_order=color_order,
                          seed=None if rng is None else int(rng.integers(2**31)))
                for single in images_of(image)]
    elif callable(saliency):
        maps = [saliency(single) for single in images_of(image)]
    else:
        return check_saliency(saliency, image)
    saliency = np.stack([np.asarray(m, dtype=np.float32) for m in maps])
    return check_saliency(saliency if image.ndim == 4 else saliency[0], image)


def check_saliency(saliency: np.ndarray, image: np.ndarray) -> np.ndarray:
    """Validate a map against its image: shape (H, W) or (N, H, W), finite, in [0, 1]; float32 contiguous."""
    saliency = np.ascontiguousarray(saliency, dtype=np.float32)
    height, width = spatial_shape(image)
    allowed = [(height, width)] + ([(image.shape[0], height, width)] if image.ndim == 4 else [])
    if saliency.shape not in allowed:
        raise ValueError(f"saliency map must have shape {' or '.join(map(str, allowed))}, got {saliency.shape}")
    outside = lib.filters_unit_interval_check(as_pointer(saliency, np.float32), saliency.size)
    if outside == 1:
        raise ValueError("saliency map contains NaN or infinite values")
    if outside:
        raise ValueError("saliency map values must lie in [0, 1]")
    return saliency
