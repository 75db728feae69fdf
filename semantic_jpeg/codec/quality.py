"""Quantisation tables for a (possibly fractional) JPEG quality, by the IJG libjpeg rule.

``quant_tables(50)`` equals the tables Pillow/libjpeg write at ``quality=50``; fractional qualities
interpolate the scale factor so that rate control can move in steps finer than one quality unit.
Tables are 64 values in natural (row-major) order, as Pillow's ``qtables=`` takes them.
"""
import numbers

import numpy as np

# ITU T.81 Annex K.1, natural order
LUMA_BASE = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], dtype=np.float64)
CHROMA_BASE = np.full(64, 99.0)
CHROMA_BASE[[0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 24, 25]] = [17, 18, 24, 47, 18, 21, 26, 66, 24, 26, 56, 47, 66]

MIN_QUALITY, MAX_QUALITY = 1.0, 100.0


def check_quality(quality, name="quality") -> float:
    """Return ``quality`` as float, or raise if it is not a number in [1, 100]."""
    if isinstance(quality, (bool, str, bytes)) or not isinstance(quality, numbers.Real):  # True is 1 to float()
        raise TypeError(f"{name} must be a number in [1, 100], got {quality!r}")
    q = float(quality)
    if not (MIN_QUALITY <= q <= MAX_QUALITY):
        raise ValueError(f"{name} must be in [1, 100], got {quality!r}")
    return q


def quant_tables(quality: float) -> np.ndarray:
    """(2, 64) uint16 luma and chroma tables for ``quality`` in [1, 100] (IJG ``jpeg_quality_scaling``,
    baseline-limited to [1, 255])."""
    q = check_quality(quality)
    scale = 5000.0 / q if q < 50 else 200.0 - 2.0 * q
    tables = np.floor((np.stack([LUMA_BASE, CHROMA_BASE]) * scale + 50.0) / 100.0)
    return np.clip(tables, 1, 255).astype(np.uint16)


def level_qualities(levels: int, quality_range) -> np.ndarray:
    """Quality of each saliency level (paper eq. 2.7): evenly spaced from Q_l (level 0, least salient) to
    Q_h (level k-1). Eq. 2.7 as printed divides by k and so never reaches Q_h (30..62 for k=5); the paper's
    experiments use "Q in increments of ten from 30 to 70" with k=5, i.e. k-1 steps, which we follow."""
    if isinstance(levels, bool) or not isinstance(levels, (int, np.integer)) or not 1 <= levels <= 64:
        raise ValueError(f"levels must be an integer in [1, 64], got {levels!r}")
    try:
        q_low, q_high = quality_range
    except (TypeError, ValueError):
        raise TypeError(f"quality_range must be a pair (Q_l, Q_h), got {quality_range!r}") from None
    q_low, q_high = check_quality(q_low, "quality_range[0]"), check_quality(q_high, "quality_range[1]")
    if q_low > q_high:
        raise ValueError(f"quality_range must be increasing, got {quality_range!r}")
    if levels == 1:
        return np.array([q_high])
    return q_low + np.arange(levels) * (q_high - q_low) / (levels - 1)
