"""Fixation-prediction metrics: AUC-Judd, shuffled AUC, NSS, CC, KLD, log-likelihood and information gain.

Definitions follow the MIT/Tübingen saliency benchmark as implemented in pysaliency (Kümmerer, Wallis and Bethge,
"Saliency benchmarking made easy: separating models, maps and metrics", ECCV 2018; Bylinskii et al., "What do
different evaluation metrics tell us about saliency models?", IEEE TPAMI 2019). pysaliency installs here but its
package no longer imports (it needs ``pkg_resources``, gone from current setuptools), so these are re-implemented
with numpy only and tested against pysaliency's own metric functions (tests/test_gaze.py) where available.

Conventions: a map is a 2-D array over the image's pixels; fixations are ``xy`` (n, 2) pixel coordinates
(x = column, y = row, floats allowed, truncated to the pixel that contains them); a log-density is a natural-log
probability per pixel whose exponentials sum to 1. Only numpy/scipy: no torch.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import gaussian_filter

EPS = 2.2204e-16  # the regularisation constant of the MIT benchmark's KL-divergence


def _check_map(saliency, name="saliency") -> np.ndarray:
    saliency = np.asarray(saliency, dtype=np.float64)
    if saliency.ndim != 2 or saliency.size == 0:
        raise ValueError(f"{name} must be a non-empty 2-D array, got shape {saliency.shape}")
    if not np.isfinite(saliency).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return saliency


def fixation_indices(xy, shape) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of the pixels containing fixations ``xy`` (n, 2) = (x, y) on an image of ``shape``."""
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    if len(xy) == 0:
        raise ValueError("no fixations given")
    if not np.isfinite(xy).all():
        raise ValueError("fixation coordinates contain NaN or infinite values")
    rows = np.clip(xy[:, 1].astype(np.int64), 0, shape[0] - 1)
    cols = np.clip(xy[:, 0].astype(np.int64), 0, shape[1] - 1)
    return rows, cols


def roc_auc(positives, negatives) -> float:
    """Area under the ROC curve of classifying ``positives`` against ``negatives`` by thresholding (ties count
    one half; pysaliency's ``general_roc``)."""
    positives = np.asarray(positives, np.float64).ravel()
    negatives = np.sort(np.asarray(negatives, np.float64).ravel())
    if len(positives) == 0 or len(negatives) == 0:
        raise ValueError("roc_auc needs at least one positive and one negative")
    below = np.searchsorted(negatives, positives, side="left")
    equal = np.searchsorted(negatives, positives, side="right") - below
    return float((below + 0.5 * equal).sum() / (len(positives) * len(negatives)))


def auc_judd(saliency, xy) -> float:
    """AUC-Judd (Judd et al., ICCV 2009): thresholds at the map values of the fixated pixels; hit rate over the
    fixated pixels, false-positive rate over all other pixels (each fixated pixel counted once)."""
    saliency = _check_map(saliency)
    rows, cols = fixation_indices(xy, saliency.shape)
    fixated = np.zeros(saliency.shape, bool)
    fixated[rows, cols] = True
    positives = saliency[fixated]
    negatives = saliency[~fixated]
    # Judd's variant: thresholds only at positive values; the ROC is linear between them. For untied values
    # this equals the rank AUC of positives against the non-fixated pixels.
    thresholds = np.sort(positives)[::-1]
    sorted_neg = np.sort(negatives)
    tpr = np.arange(1, len(thresholds) + 1) / len(thresholds)
    fpr = (len(sorted_neg) - np.searchsorted(sorted_neg, thresholds, side="left")) / max(len(sorted_neg), 1)
    tpr = np.concatenate([[0.0], tpr, [1.0]])
    fpr = np.concatenate([[0.0], fpr, [1.0]])
    return float(np.trapezoid(tpr, fpr))


def shuffled_auc(saliency, xy, other_xy) -> float:
    """Shuffled AUC (Zhang et al., JOV 2008): fixations of this image against the fixations of OTHER images
    (``other_xy``, already in this image's pixel coordinates) as negatives; cancels a pure centre bias."""
    saliency = _check_map(saliency)
    rows, cols = fixation_indices(xy, saliency.shape)
    neg_rows, neg_cols = fixation_indices(other_xy, saliency.shape)
    return roc_auc(saliency[rows, cols], saliency[neg_rows, neg_cols])


def nss(saliency, xy) -> float:
    """Normalized scanpath saliency (Peters et al., Vision Research 2005): mean of the standardised map over
    the fixations (every fixation counts)."""
    saliency = _check_map(saliency)
    rows, cols = fixation_indices(xy, saliency.shape)
    std = saliency.std()
    values = saliency[rows, cols] - saliency.mean()
    return float((values / std).mean()) if std > 0 else 0.0


def cc(saliency, reference) -> float:
    """Pearson correlation of two maps (0 when the first map is constant)."""
    a, b = _check_map(saliency), _check_map(reference, "reference")
    if a.shape != b.shape:
        raise ValueError(f"maps differ in shape: {a.shape} vs {b.shape}")
    a, b = a - a.mean(), b - b.mean()
    denominator = math.sqrt(float((a * a).sum()) * float((b * b).sum()))
    return float((a * b).sum() / denominator) if denominator > 0 else 0.0


def kld(saliency, reference) -> float:
    """KL divergence of the map (as a distribution) from the empirical fixation density ``reference``, as in the
    MIT benchmark: sum P log(eps + P / (Q + eps)) with P = reference / sum, Q = saliency / sum (lower is better)."""
    q, p = _check_map(saliency), _check_map(reference, "reference")
    if q.shape != p.shape:
        raise ValueError(f"maps differ in shape: {q.shape} vs {p.shape}")
    q, p = q - min(q.min(), 0.0), p - min(p.min(), 0.0)
    q = q / q.sum() if q.sum() > 0 else np.full(q.shape, 1.0 / q.size)
    p = p / p.sum() if p.sum() > 0 else np.full(p.shape, 1.0 / p.size)
    return float((p * np.log(EPS + p / (q + EPS))).sum())


def log_likelihood(log_density, xy) -> float:
    """Mean log-likelihood of the fixations in bits per fixation, relative to a uniform density over the image
    (0 = uniform)."""
    log_density = _check_map(log_density, "log_density")
    total = float(np.exp(log_density).sum())
    if not 0.99 < total < 1.01:
        raise ValueError(f"log_density must be normalised (exp sums to 1), sums to {total:.4g}")
    rows, cols = fixation_indices(xy, log_density.shape)
    return float((log_density[rows, cols].mean() + math.log(log_density.size)) / math.log(2))


def information_gain(log_density, baseline_log_density, xy) -> float:
    """Information gain over a baseline model (e.g. centre bias), bits per fixation (Kümmerer, Wallis and
    Bethge, PNAS 2015): mean over the fixations of log2 p(x) - log2 p_baseline(x)."""
    return log_likelihood(log_density, xy) - log_likelihood(baseline_log_density, xy)


def fixation_density(xy, shape, sigma: float) -> np.ndarray:
    """Empirical fixation map: a count per fixated pixel blurred by a Gaussian of ``sigma`` pixels, sum 1."""
    rows, cols = fixation_indices(xy, shape)
    counts = np.zeros(shape, np.float64)
    np.add.at(counts, (rows, cols), 1.0)
    density = gaussian_filter(counts, sigma, mode="constant") if sigma > 0 else counts
    return density / density.sum()


def log_density_from_map(density, floor: float = 0.0) -> np.ndarray:
    """Normalise a non-negative map into a log-density (optionally mixed with ``floor`` of a uniform density)."""
    density = _check_map(density, "density")
    if density.min() < 0:
        raise ValueError("density must be non-negative")
    total = density.sum()
    p = density / total if total > 0 else np.full(density.shape, 1.0 / density.size)
    if floor:
        p = (1 - floor) * p + floor / p.size
    with np.errstate(divide="ignore"):
        return np.log(p)


def gold_standard_log_density(other_xy, shape, sigma: float, baseline_log_density, mix: float = 0.5):
    """Leave-one-observer-out "gold standard" (Kümmerer et al., PNAS 2015): a Gaussian kernel density of the
    OTHER observers' fixations (``sigma`` pixels), mixed with a baseline density (weight ``1 - mix``) so that no
    pixel gets probability 0."""
    kde = fixation_density(other_xy, shape, sigma)
    p = mix * kde + (1 - mix) * np.exp(_check_map(baseline_log_density, "baseline_log_density"))
    return np.log(p / p.sum())
