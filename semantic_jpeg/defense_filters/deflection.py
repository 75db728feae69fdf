"""Pixel deflection (paper 000 Algorithm 2) and R-CAM-targeted pixel deflection (sec 4.6, 4.8), native C."""
from __future__ import annotations

import numbers

import numpy as np

from semantic_jpeg.native import as_pointer, ffi, lib

from ._conventions import as_generator, check_color_order, check_dst, check_image, spatial_shape
from .saliency import resolve_saliency


def pixel_deflection(image, deflections: int = 100, window: int = 10, *, saliency=None, per_channel: bool = False,
                     rng=None, color_order: str = "BGR", dst=None) -> np.ndarray:
    """Deflect ``deflections`` random pixels, each replaced by a random pixel of its window (Algorithm 2).

    Each attempt draws a pixel p uniformly over the image and a neighbour n uniformly over the square window of
    apothem ``window`` around p, clipped at the borders (p itself included), and sets ``out[p] = image[n]``
    (values are read from the unmodified input). With ``saliency`` (an (H, W) map in [0, 1], a callable, or
    ``"rcam"``/``"msroi"``/``"aug-msroi"``, see :mod:`.saliency`) the attempt at p goes ahead only when a
    U(0, 1) draw exceeds the map value at p (sec 4.8), so salient pixels are deflected less.

    ``per_channel=False`` (default, Algorithm 2 as written) moves all channels of p together;
    ``per_channel=True`` repeats every attempt independently per channel, as the authors' released code does
    (C times as many draws, colours mixed). The loop runs in C with xoshiro256** seeded from ``rng``.
    """
    image = check_image(image)
    if not isinstance(deflections, numbers.Integral) or deflections < 0:
        raise ValueError(f"deflections must be an integer >= 0, got {deflections!r}")
    if not isinstance(window, numbers.Integral) or window < 1:
        raise ValueError(f"window (apothem) must be an integer >= 1, got {window!r}")
    height, width = spatial_shape(image)
    if 2 * window + 1 > min(height, width):
        raise ValueError(f"window of apothem {window} ({2 * window + 1} px) is larger than the {height}x{width} image")
    rng = as_generator(rng)
    maps = resolve_saliency(saliency, image, color_order=check_color_order(color_order), rng=rng)
    channels = image.shape[-1] if image.ndim >= 3 else 1
    source = np.ascontiguousarray(image)
    if dst is not None:
        check_dst(dst, image)
    out = dst if dst is not None and dst.flags.c_contiguous and not np.shares_memory(dst, source) else None
    if out is None:
        out = source.copy()
    else:
        np.copyto(out, source)
    batch = source.reshape(-1, height, width, channels)
    out_batch = out.reshape(batch.shape)
    for index, (single, single_out) in enumerate(zip(batch, out_batch)):
        single_map = None if maps is None else (maps if maps.ndim == 2 else maps[index])
        lib.filters_pixel_deflection(
            as_pointer(single.reshape(-1).view(np.uint8), np.uint8),
            as_pointer(single_out.reshape(-1).view(np.uint8), np.uint8),
            height, width, channels, image.itemsize, int(deflections), int(window),
            ffi.NULL if single_map is None else as_pointer(single_map, np.float32),
            int(bool(per_channel)), int(rng.integers(2**64, dtype=np.uint64)),
        )
    if dst is not None and out is not dst:
        np.copyto(dst, out)
        return dst
    return out
