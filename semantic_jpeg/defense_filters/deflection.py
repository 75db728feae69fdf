"""Pixel deflection (Prakash 2019 Algorithm 2) and R-CAM-targeted pixel deflection (sec 4.6, 4.8), native C."""
from __future__ import annotations

import numpy as np

from semantic_jpeg.native import as_output_pointer, as_pointer, ffi, lib

from ._conventions import (
    as_generator,
    channel_count,
    check_color_order,
    check_image,
    check_integer,
    deliver,
    kernel_output,
    spatial_shape,
)
from .saliency import resolve_saliency

# Upper bound of ``deflections``: 10^8 attempts took 1.0 s on one core at 224x224x3 uint8 (so 2^31 - 1 take about
# 20 s, 3x that with per_channel); the papers use 100-2000. Larger values are refused rather than run for minutes.
MAX_DEFLECTIONS = 2**31 - 1
_CHUNK = 1 << 20  # attempts per native call


def pixel_deflection(image, deflections: int = 100, window: int = 10, *, saliency=None, per_channel: bool = False,
                     rng=None, color_order: str = "RGB", dst=None) -> np.ndarray:
    """Deflect ``deflections`` random pixels, each replaced by a random pixel of its window (Algorithm 2).

    Each attempt draws a pixel p uniformly over the image and a neighbour n uniformly over the square window of
    apothem ``window`` around p, clipped at the borders (p itself included), and sets ``out[p] = image[n]``
    (values are read from the unmodified input). With ``saliency`` (an (H, W) map in [0, 1], a callable, or
    ``"rcam"``/``"msroi"``/``"aug-msroi"``, see :mod:`.saliency`) the attempt at p goes ahead only when a
    U(0, 1) draw exceeds the map value at p (sec 4.8), so salient pixels are deflected less.

    ``per_channel=False`` (default, Algorithm 2 as written) moves all channels of p together;
    ``per_channel=True`` repeats every attempt independently per channel, as the first versions of the authors'
    released code do (C times as many draws, colours mixed). The loop runs in C with xoshiro256** seeded from
    ``rng``, in chunks, so Ctrl-C stops it. ``deflections`` is at most ``MAX_DEFLECTIONS`` (2^31 - 1).
    """
    image = check_image(image)
    deflections = check_integer(deflections, "deflections", 0, MAX_DEFLECTIONS)
    window = check_integer(window, "window (apothem)", 1)
    height, width = spatial_shape(image)
    if 2 * window + 1 > min(height, width):
        raise ValueError(f"window of apothem {window} ({2 * window + 1} px) is larger than the {height}x{width} image")
    rng = as_generator(rng)
    maps = resolve_saliency(saliency, image, color_order=check_color_order(color_order), rng=rng)
    source = np.ascontiguousarray(image)
    out = kernel_output(source, dst)  # refuses a read-only dst; the deflections happen within a copy of `source`
    np.copyto(out, source)
    count = image.shape[0] if image.ndim == 4 else 1
    image_bytes = source.nbytes // count
    source_bytes = ffi.from_buffer("uint8_t[]", source)  # contiguous, uint8 or float32 (checked above)
    out_bytes = as_output_pointer(out.reshape(-1).view(np.uint8), np.uint8)
    maps_pointer = ffi.NULL if maps is None else as_pointer(maps, np.float32)
    args = ffi.new("filters_deflection_args *", dict(height=height, width=width, channels=channel_count(image),
                                                      elem_bytes=image.itemsize, window=window,
                                                      per_channel=int(bool(per_channel))))
    state = ffi.new("uint64_t[4]")
    for index in range(count):
        args.src, args.dst = source_bytes + index * image_bytes, out_bytes + index * image_bytes
        args.saliency = maps_pointer if maps is None or maps.ndim == 2 else maps_pointer + index * height * width
        # Each image's xoshiro256** seed is one raw 64-bit draw: the value rng.integers(2**64, dtype=np.uint64)
        # returns, without its argument handling (that took a quarter of this function's first-call time at
        # 224x224).
        lib.filters_deflection_seed(int(rng.bit_generator.random_raw()), state)
        for start in range(0, deflections, _CHUNK):  # back in Python between chunks, so Ctrl-C stops the loop
            if lib.filters_pixel_deflection(args, min(_CHUNK, deflections - start), state) < 0:
                raise RuntimeError("native pixel deflection refused its arguments")
    return deliver(out, dst)
