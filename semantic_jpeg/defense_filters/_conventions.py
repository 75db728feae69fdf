"""Array conventions shared by every filter.

Images are numpy arrays HxW, HxWxC or NxHxWxC batches, uint8 in [0, 255] or float32 in [0, 1]; colour
images are RGB unless ``color_order="BGR"`` (the package's one input policy, :mod:`semantic_jpeg.image_input`).
A filter returns the same shape and dtype, never modifies its input, writes into ``dst`` when one is given (it
must be writeable), and rounds (not truncates) back to uint8.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from semantic_jpeg.image_input import check_color_order as _check_color_order
from semantic_jpeg.image_input import check_float_range, check_writable

_DTYPES = (np.dtype(np.uint8), np.dtype(np.float32))


def check_image(image, *, min_side: int = 2) -> np.ndarray:
    """Validate ``image`` against the conventions and return it as an ndarray (no copy)."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a numpy array, got {type(image).__name__}")
    if image.dtype not in _DTYPES:
        raise TypeError(f"image dtype must be uint8 or float32 in [0, 1], got {image.dtype}")
    if image.ndim not in (2, 3, 4):
        raise ValueError(f"image must be HxW, HxWxC or NxHxWxC, got shape {image.shape}")
    if image.size == 0:
        raise ValueError(f"image is empty (shape {image.shape})")
    height, width = spatial_shape(image)
    if height < min_side or width < min_side:
        raise ValueError(f"image must be at least {min_side}x{min_side} pixels, got {height}x{width}")
    if image.ndim >= 3 and image.shape[-1] > 4:
        raise ValueError(f"image must have 1 to 4 channels in its last axis, got shape {image.shape}")
    if image.dtype == np.float32:
        check_float_range(image)
    return image


# How far outside [0, 1] an adapter's float input may stray and still be clipped into it: half a uint8 step, far
# above the float error of an attack's clipped update, far below a real out-of-range input (0..255 pixels, a
# mean/std-normalised tensor), which is refused.
UNIT_RANGE_SLACK = 1.0 / 512.0


def clip_unit_range(array: np.ndarray, what: str) -> np.ndarray:
    """A float array of an adapter (torch, ART) as float32 in [0, 1]: values within :data:`UNIT_RANGE_SLACK` of
    the range are clipped into it; NaN, infinities and values further out are a ValueError naming ``what``."""
    array = np.asarray(array, dtype=np.float32)
    if array.size == 0:
        return array
    low, high = float(array.min()), float(array.max())
    if not (np.isfinite(low) and np.isfinite(high)):
        raise ValueError(f"{what} contains NaN or infinite values")
    if low < -UNIT_RANGE_SLACK or high > 1.0 + UNIT_RANGE_SLACK:
        raise ValueError(f"{what} values must lie in [0, 1] (images before mean/std normalisation; divide 0..255 "
                         f"pixels by 255), got [{low:.4g}, {high:.4g}]")
    return np.clip(array, 0.0, 1.0) if low < 0.0 or high > 1.0 else array


def spatial_shape(image: np.ndarray) -> tuple[int, int]:
    """(height, width) of an image or batch."""
    return image.shape[:2] if image.ndim in (2, 3) else image.shape[1:3]


def channel_count(image: np.ndarray) -> int:
    """Channels of an image or batch (1 for HxW)."""
    return image.shape[-1] if image.ndim >= 3 else 1


def check_color_order(color_order: str) -> str:
    """"RGB" or "BGR" (case-insensitive), else a ValueError naming ``color_order``."""
    return _check_color_order(color_order)


def as_generator(rng) -> np.random.Generator:
    """``rng`` as a numpy Generator: None (fresh entropy), an int seed, or a Generator."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None:
        return np.random.default_rng()
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool):
        if rng < 0:
            raise ValueError(f"rng seed must be an integer >= 0, got {rng!r}")
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be None, an int seed or a numpy.random.Generator, got {type(rng).__name__}")


def check_rng(rng) -> None:
    """What :func:`as_generator` would refuse, refused by a filter that draws nothing (its ``rng`` exists so that
    every filter takes the same arguments; a wrong one is still the caller's mistake)."""
    if rng is not None and not isinstance(rng, np.random.Generator):
        as_generator(rng)


def check_integer(value, name: str, minimum: int, maximum: int | None = None) -> int:
    """``value`` as an int, or a ValueError naming ``name`` unless it is an integer >= ``minimum`` (and <=
    ``maximum`` when given); a bool is refused (``True`` is an int to Python, but never a meant count). (Built-in
    ints are tested first: an ABC isinstance check costs microseconds when its code is not cached.)"""
    number = (int(value) if type(value) is int or (isinstance(value, numbers.Integral) and not isinstance(value, bool))
              else None)
    if number is None or number < minimum or (maximum is not None and number > maximum):
        bound = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum}"
        raise ValueError(f"{name} must be an integer {bound}, got {value!r}")
    return number


def check_nonnegative(value, name: str) -> float:
    """``value`` as a float, or a ValueError naming ``name`` unless it is a finite real number >= 0."""
    if not (type(value) is float or isinstance(value, numbers.Real)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def to_float(image: np.ndarray) -> np.ndarray:
    """float32 copy in [0, 1]."""
    if image.dtype == np.uint8:
        return image.astype(np.float32) * np.float32(1.0 / 255.0)
    return image.astype(np.float32, copy=True)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """uint8 view of an image: itself if uint8, else rounded from [0, 1]."""
    if image.dtype == np.uint8:
        return image
    return np.rint(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def finish(result: np.ndarray, like: np.ndarray, dst) -> np.ndarray:
    """Cast a float result in [0, 1] (or a uint8 result) to ``like``'s dtype, into ``dst`` if given."""
    result = np.ascontiguousarray(result).reshape(like.shape)
    if like.dtype == np.uint8 and result.dtype != np.uint8:
        result = np.rint(np.clip(result, 0.0, 1.0, out=result) * 255.0, out=result)
    elif like.dtype == np.float32 and result.dtype == np.uint8:
        result = result.astype(np.float32) * np.float32(1.0 / 255.0)
    elif like.dtype == np.float32:
        result = np.clip(result, 0.0, 1.0, out=result if result.dtype == np.float32 else None)
    if dst is None:
        return result.astype(like.dtype, copy=False)
    check_dst(dst, like)
    np.copyto(dst, result, casting="unsafe")
    return dst


def check_dst(dst, like: np.ndarray) -> None:
    """``dst`` must be a writeable array of ``like``'s shape and dtype (every filter checks it before writing)."""
    check_writable(dst)
    if dst.shape != like.shape or dst.dtype != like.dtype:
        raise ValueError(f"dst must have the input's shape {like.shape} and dtype {like.dtype}, "
                         f"got {dst.shape} {dst.dtype}")


def kernel_output(source: np.ndarray, dst) -> np.ndarray:
    """Where a native kernel writes its result for ``source``: ``dst`` itself when it is C-contiguous and does
    not overlap ``source``, else a new array like ``source`` (hand it to :func:`deliver`)."""
    if dst is None:
        return np.empty_like(source)
    check_dst(dst, source)
    if dst.flags.c_contiguous and not np.shares_memory(dst, source):
        return dst
    return np.empty_like(source)


def deliver(out: np.ndarray, dst) -> np.ndarray:
    """A kernel's output ``out`` as the filter's result: copied into ``dst`` when it was not written there."""
    if dst is None or out is dst:
        return out
    np.copyto(dst, out)
    return dst


def images_of(image: np.ndarray):
    """Iterate over the single images of a batch (or the image itself)."""
    return iter(image) if image.ndim == 4 else iter((image,))


def per_image(func, image: np.ndarray, *args, **kwargs) -> np.ndarray:
    """Apply ``func(single_image, ...)`` to each image of a batch and stack, or to one image."""
    if image.ndim != 4:
        return func(image, *args, **kwargs)
    return np.stack([func(single, *args, **kwargs) for single in image])
