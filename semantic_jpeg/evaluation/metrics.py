"""Accuracy, destruction rate (Prakash et al., DCC 2018; after Kurakin et al., 2016), Ens-k majority vote and the
perturbation budget measure used throughout: L2-normalised RMSE in [0,1] pixel units."""
from __future__ import annotations

import numpy as np
from scipy import stats


def _labels(pred, labels) -> tuple[np.ndarray, np.ndarray]:
    pred, labels = np.asarray(pred), np.asarray(labels)
    if pred.shape != labels.shape or pred.ndim != 1:
        raise ValueError(f"predictions {pred.shape} and labels {labels.shape} must be equal 1-D shapes")
    if pred.size == 0:
        raise ValueError("no predictions to score")
    return pred, labels


def top1_accuracy(pred, labels) -> float:
    """Fraction of predictions equal to the labels."""
    pred, labels = _labels(pred, labels)
    return float(np.mean(pred == labels))


def destruction_rate(clean_pred, adv_pred, defended_adv_pred, labels) -> float:
    """Destruction rate (Prakash et al., DCC 2018; thesis sec. 3.7):
    d = sum C(x_i,y_i)(1-C(x'_i,y_i))C(T(x'_i),y_i) / sum C(x_i,y_i)(1-C(x'_i,y_i)), the fraction of successful
    adversarial images that the transformation T brings back to the true class.
    NaN when no adversarial image succeeded (the rate is undefined)."""
    clean_pred, labels = _labels(clean_pred, labels)
    adv_pred, _ = _labels(adv_pred, labels)
    defended_adv_pred, _ = _labels(defended_adv_pred, labels)
    fooled = (clean_pred == labels) & (adv_pred != labels)
    if not fooled.any():
        return float("nan")
    return float(np.sum(fooled & (defended_adv_pred == labels)) / np.sum(fooled))


def majority_vote(draw_preds) -> np.ndarray:
    """Ens-k (Prakash et al., CVPR 2018; Dziedzic, dissertation sec. 3.2.1): most frequent label over the draws
    (axis 0) for each image; ties go to the smallest class index."""
    draw_preds = np.asarray(draw_preds)
    if draw_preds.ndim != 2 or draw_preds.shape[0] == 0:
        raise ValueError(f"expected draws x images predictions, got shape {draw_preds.shape}")
    return stats.mode(draw_preds, axis=0, keepdims=False).mode.astype(np.int64)


def rmse(x, x_adv) -> np.ndarray:
    """Per-image L2-normalised RMSE, ||x - x'||_2 / sqrt(#values), of images in [0,1] (N x ...)."""
    x, x_adv = np.asarray(x, np.float64), np.asarray(x_adv, np.float64)
    if x.shape != x_adv.shape:
        raise ValueError(f"shapes differ: {x.shape} vs {x_adv.shape}")
    return np.sqrt(np.mean((x - x_adv).reshape(len(x), -1) ** 2, axis=1))


def linf(x, x_adv) -> np.ndarray:
    """Per-image L-inf distance of images in [0,1] (N x ...)."""
    x, x_adv = np.asarray(x, np.float64), np.asarray(x_adv, np.float64)
    if x.shape != x_adv.shape:
        raise ValueError(f"shapes differ: {x.shape} vs {x_adv.shape}")
    return np.abs(x - x_adv).reshape(len(x), -1).max(axis=1)
