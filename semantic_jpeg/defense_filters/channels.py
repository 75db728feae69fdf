"""Lossy channels C(x) (Dziedzic 2019 sec 3.2) and the other purifiers compared in Prakash 2019 Table 4.6 / 4.11.

Deterministic: JPEG at quality Q, semantic JPEG (through :func:`semantic_jpeg.encode`), FFT low-pass
(frequency compression), colour-depth reduction, SVD rank truncation, median smoothing, non-local means.
Stochastic: additive Gaussian, uniform and Laplace noise, random resize + pad.
All follow the package conventions (see :mod:`._conventions`).
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

from ._conventions import (
    as_generator,
    channel_count,
    check_color_order,
    check_image,
    check_integer,
    check_nonnegative,
    check_rng,
    finish,
    per_image,
    spatial_shape,
    to_float,
    to_uint8,
)
from .saliency import resolve_saliency


def _to_rgb_uint8(image: np.ndarray, color_order: str) -> np.ndarray:
    image = to_uint8(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    return image[..., ::-1] if image.ndim == 3 and color_order == "BGR" else image


def _from_rgb_uint8(decoded: np.ndarray, like: np.ndarray, color_order: str) -> np.ndarray:
    decoded = decoded[..., ::-1] if decoded.ndim == 3 and color_order == "BGR" else decoded
    return decoded.reshape(like.shape)


def _check_jpeg_channels(image: np.ndarray) -> None:
    if image.ndim >= 3 and image.shape[-1] not in (1, 3):
        raise ValueError(f"JPEG channels need 1 or 3 channels, got shape {image.shape}")


def jpeg(image, quality: int = 75, *, color_order: str = "RGB", dst=None, rng=None) -> np.ndarray:
    """Encode to a baseline JPEG at ``quality`` (Pillow, 4:2:0) and decode it back (Prakash 2019 Table 4.7)."""
    image = check_image(image)
    check_rng(rng)
    _check_jpeg_channels(image)
    quality = check_integer(quality, "quality", 1)
    if quality > 100:
        raise ValueError(f"quality must be in 1..100, got {quality}")
    order = check_color_order(color_order)

    def one(single):
        buffer = io.BytesIO()
        Image.fromarray(_to_rgb_uint8(single, order)).save(buffer, format="JPEG", quality=quality)
        return _from_rgb_uint8(np.asarray(Image.open(buffer)), single, order)

    return finish(per_image(one, image), image, dst)


def semantic_jpeg(image, saliency="aug-msroi", *, levels: int = 5, quality_range=(30, 70), color_order: str = "RGB",
                  rng=None, dst=None, **encode_options) -> np.ndarray:
    """Round trip through the semantic JPEG codec (Prakash 2019 Algorithm 1; Aug-MSROI maps, sec 3.6).

    ``saliency`` is a map, a callable or ``"msroi"``/``"aug-msroi"``/``"rcam"`` (see :mod:`.saliency`); the
    Aug-MSROI perturbations draw their seed from ``rng``. Extra keywords go to :func:`semantic_jpeg.encode`.
    """
    from semantic_jpeg import encode

    image = check_image(image)
    if image.ndim < 3 or image.shape[-1] != 3:
        raise ValueError(f"semantic JPEG needs HxWx3 colour images, got shape {image.shape}")
    order = check_color_order(color_order)
    rng = as_generator(rng)
    maps = resolve_saliency(saliency, image, color_order=order, rng=rng)

    encode_options.setdefault("mode", "dct")  # the paper's saliency levels (the codec's default mode is "rdo")

    def one(single, single_map):
        data = encode(np.ascontiguousarray(to_uint8(single)), saliency=single_map, levels=levels,
                      quality_range=quality_range, color_order=order, **encode_options)
        decoded = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        return _from_rgb_uint8(decoded, single, order)

    if image.ndim == 4:
        per_map = maps if maps is not None and maps.ndim == 3 else [maps] * len(image)  # None: the codec's map
        result = np.stack([one(single, m) for single, m in zip(image, per_map)])
    else:
        result = one(image, maps)
    return finish(result, image, dst)


def fft_lowpass(image, compression: float = 0.5, *, dst=None, rng=None) -> np.ndarray:
    """Frequency compression: keep the lowest spatial frequencies, discard a ``compression`` fraction.

    Per channel, the 2-D spectrum keeps coefficients with |f_y| <= a H and |f_x| <= a W (a centred square band,
    conjugate symmetry kept, so the result is real), a = sqrt(1 - compression) / 2: the kept fraction of the
    spectrum is 1 - compression (Dziedzic 2019 sec 2.2 / 3.3, "FC" channel).
    """
    image = check_image(image)
    check_rng(rng)
    compression = check_nonnegative(compression, "compression")
    if compression >= 1:
        raise ValueError(f"compression must be in [0, 1), got {compression}")
    height, width = spatial_shape(image)
    half = np.sqrt(1.0 - compression) / 2.0
    keep_rows = np.abs(np.fft.fftfreq(height)) <= half
    keep_cols = np.abs(np.fft.rfftfreq(width)) <= half
    mask = keep_rows[:, None] & keep_cols[None, :]
    pixels = to_float(image).reshape((-1, height, width, channel_count(image)))
    spectrum = np.fft.rfft2(pixels, axes=(1, 2))
    spectrum *= mask[None, :, :, None]
    result = np.fft.irfft2(spectrum, s=(height, width), axes=(1, 2)).astype(np.float32)
    return finish(result, image, dst)


def color_depth(image, bits: int = 4, *, dst=None, rng=None) -> np.ndarray:
    """Colour-depth reduction C(v, b) = round((2^b - 1) v) / (2^b - 1) (Dziedzic 2019 sec 3.2.1, rounded)."""
    image = check_image(image)
    check_rng(rng)
    bits = check_integer(bits, "bits", 1)
    if bits > 8:
        raise ValueError(f"bits must be in 1..8, got {bits}")
    levels = np.float32(2**bits - 1)
    return finish(np.rint(to_float(image) * levels) / levels, image, dst)


def svd_truncate(image, rank: int = 32, *, dst=None, rng=None) -> np.ndarray:
    """Keep the ``rank`` largest singular values of each channel (the SVD channel of Dziedzic 2019 sec 3.3)."""
    image = check_image(image)
    check_rng(rng)
    rank = check_integer(rank, "rank", 1)

    def one(single):
        planes = np.moveaxis(to_float(single).reshape(single.shape[0], single.shape[1], -1), -1, 0)
        u, s, vt = np.linalg.svd(planes, full_matrices=False)
        s[:, rank:] = 0
        return np.moveaxis((u * s[:, None, :]) @ vt, 0, -1)

    return finish(per_image(one, image), image, dst)


def gaussian_noise(image, sigma: float = 0.05, *, rng=None, dst=None) -> np.ndarray:
    """x + N(0, sigma^2) per value, clipped to [0, 1] (Dziedzic 2019 sec 3.2.1)."""
    image = check_image(image)
    sigma = np.float32(check_nonnegative(sigma, "sigma"))
    noise = as_generator(rng).standard_normal(image.shape, dtype=np.float32)
    return finish(to_float(image) + sigma * noise, image, dst)


def uniform_noise(image, bound: float = 0.05, *, rng=None, dst=None) -> np.ndarray:
    """x + U(-bound, bound) per value, clipped to [0, 1] (Dziedzic 2019 sec 3.2.1)."""
    image = check_image(image)
    bound = np.float32(check_nonnegative(bound, "bound"))
    noise = as_generator(rng).random(image.shape, dtype=np.float32)
    return finish(to_float(image) + bound * (2 * noise - 1), image, dst)


def laplace_noise(image, scale: float = 0.03, *, rng=None, dst=None) -> np.ndarray:
    """x + Laplace(0, scale) per value, clipped to [0, 1] (Dziedzic 2019 sec 1, the "strong" channel)."""
    image = check_image(image)
    scale = check_nonnegative(scale, "scale")
    noise = as_generator(rng).laplace(0.0, scale, image.shape).astype(np.float32)
    return finish(to_float(image) + noise, image, dst)


def median_smoothing(image, size: int = 3, *, dst=None, rng=None) -> np.ndarray:
    """Median over a size x size window per channel, borders replicated (cv2.medianBlur's result)."""
    from scipy.ndimage import median_filter

    image = check_image(image)
    check_rng(rng)
    size = check_integer(size, "size", 1)
    if size % 2 == 0:
        raise ValueError(f"size must be odd, got {size}")
    footprint = (1,) * (image.ndim == 4) + (size, size) + (1,) * (image.ndim - 2 - (image.ndim == 4))
    return finish(median_filter(image, size=footprint, mode="nearest"), image, dst)


def non_local_means(image, strength: float = 10.0, *, template_size: int = 7, search_size: int = 21,
                    color_order: str = "RGB", dst=None, rng=None) -> np.ndarray:
    """Non-local means (OpenCV's fastNlMeansDenoising[Colored]; needs opencv-python-headless).

    ``strength`` is OpenCV's h in uint8 units; colour images use the same h for the chroma. ``template_size`` and
    ``search_size`` (OpenCV's window sides, in pixels) must be odd positive integers."""
    try:
        import cv2
    except ImportError as exc:
        raise ImportError("non_local_means needs OpenCV: pip install opencv-python-headless") from exc
    image = check_image(image)
    check_rng(rng)
    strength = check_nonnegative(strength, "strength")
    # checked here: OpenCV takes any int and dies of SIGFPE on a search window of -2 or less
    template_size = _odd_window(template_size, "template_size")
    search_size = _odd_window(search_size, "search_size")
    order = check_color_order(color_order)

    def one(single):
        pixels = to_uint8(single)
        if pixels.ndim == 3 and pixels.shape[-1] == 3:
            bgr = pixels if order == "BGR" else pixels[..., ::-1]
            out = cv2.fastNlMeansDenoisingColored(np.ascontiguousarray(bgr), None, strength, strength,
                                                  template_size, search_size)
            return out if order == "BGR" else out[..., ::-1]
        if pixels.ndim == 3 and pixels.shape[-1] != 1:
            raise ValueError(f"non_local_means needs 1 or 3 channels, got shape {single.shape}")
        out = cv2.fastNlMeansDenoising(np.ascontiguousarray(pixels.reshape(pixels.shape[:2])), None, strength,
                                       template_size, search_size)
        return out.reshape(single.shape)

    return finish(per_image(one, image), image, dst)


def _odd_window(value, name: str) -> int:
    """A window side for OpenCV: an odd integer >= 1 (at most 255, far beyond any useful window)."""
    side = check_integer(value, name, 1, 255)
    if side % 2 == 0:
        raise ValueError(f"{name} must be odd, got {value!r}")
    return side


def random_resize_pad(image, min_scale: float = 0.9, *, fill: float = 0.0, rng=None, dst=None) -> np.ndarray:
    """Xie et al.'s randomisation at a fixed output size: shrink by a random factor in [min_scale, 1]
    (bilinear), then place the result at a random offset on a ``fill``-valued canvas of the input's size.
    ``fill`` is in [0, 1] whatever the image's dtype (0.5 is 128 in a uint8 image)."""
    from scipy.ndimage import zoom

    image = check_image(image)
    min_scale = check_nonnegative(min_scale, "min_scale")
    if not 0 < min_scale <= 1:
        raise ValueError(f"min_scale must be in (0, 1], got {min_scale}")
    fill = check_nonnegative(fill, "fill")
    if fill > 1:
        raise ValueError(f"fill must be in [0, 1] (the image's range as floats; 0.5 is 128 in uint8), got {fill!r}")
    rng = as_generator(rng)
    height, width = spatial_shape(image)

    def one(single):
        scale = rng.uniform(min_scale, 1.0)
        new_height, new_width = max(1, round(height * scale)), max(1, round(width * scale))
        pixels = to_float(single).reshape(height, width, -1)
        resized = zoom(pixels, (new_height / height, new_width / width, 1), order=1, grid_mode=True, mode="nearest")
        top = rng.integers(height - new_height + 1)
        left = rng.integers(width - new_width + 1)
        canvas = np.full_like(pixels, fill)
        canvas[top:top + new_height, left:left + new_width] = resized
        return canvas.reshape(single.shape)

    return finish(per_image(one, image), image, dst)
