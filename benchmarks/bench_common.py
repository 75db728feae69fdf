"""Helpers shared by the codec benchmarks (not a benchmark itself): the fixation density used as PSNR-F's weight,
the centre-bias map and best-of-N wall-clock timing. Imported by the scripts beside it
(``python benchmarks/NAME.py`` puts this folder on ``sys.path``)."""
import time

import numpy as np


def fixation_density(points, shape):
    """Human fixation points (y, x) -> a density over the image: counts blurred by a Gaussian of 2% of the
    diagonal, plus 1e-12 so every pixel has a weight."""
    from scipy.ndimage import gaussian_filter
    h, w = shape
    density = np.zeros(shape, np.float64)
    for y, x in points:
        yi, xi = int(round(y)), int(round(x))
        if 0 <= yi < h and 0 <= xi < w:
            density[yi, xi] += 1
    return gaussian_filter(density, sigma=0.02 * np.hypot(h, w)) + 1e-12


def centre_bias(shape):
    """A centred Gaussian map, float32, standard deviation a quarter of each side."""
    h, w = shape
    y, x = np.mgrid[:h, :w]
    return np.exp(-0.5 * (((y - (h - 1) / 2) / (0.25 * h)) ** 2 + ((x - (w - 1) / 2) / (0.25 * w)) ** 2)).astype(
        np.float32)


def best(f, repeats):
    """The shortest of ``repeats`` wall-clock times (s) of ``f()``."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return min(times)
