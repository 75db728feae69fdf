"""Adversarial Robustness Toolbox adapter: a purification filter as an ART ``Preprocessor``."""
from __future__ import annotations

import numpy as np
from art.defences.preprocessor import Preprocessor

from .._conventions import as_generator, check_color_order, clip_unit_range
from ..compose import apply_filter


class PurifyPreprocessor(Preprocessor):
    """``purifier`` on ART's float arrays in [0, 1] (NHWC, or NCHW with ``channels_first``), RGB unless
    ``color_order="BGR"``. Gradients pass straight through (``estimate_gradient`` is the identity: BPDA).
    Integer arrays are a TypeError and values outside [0, 1] beyond float error a ValueError (never clipped
    silently): use a classifier with ``clip_values=(0, 1)``."""

    params = ["channels_first", "color_order"]

    def __init__(self, purifier, *, channels_first: bool = False, color_order: str = "RGB", rng=None,
                 apply_fit: bool = False, apply_predict: bool = True):
        super().__init__(is_fitted=True, apply_fit=apply_fit, apply_predict=apply_predict)
        if not callable(purifier):
            raise TypeError("purifier must be a callable filter")
        self.purifier = purifier
        self.channels_first = channels_first
        self.color_order = check_color_order(color_order)
        self.rng = as_generator(rng)

    def __call__(self, x: np.ndarray, y=None):
        if x.ndim != 4:
            raise ValueError(f"expected a 4-D batch, got shape {x.shape}")
        if not np.issubdtype(x.dtype, np.floating):
            raise TypeError(f"PurifyPreprocessor expects float arrays in [0, 1], got {x.dtype} "
                            "(convert 0..255 pixels with x / 255)")
        images = np.moveaxis(x, 1, -1) if self.channels_first else x
        images = np.ascontiguousarray(clip_unit_range(images, "PurifyPreprocessor input"))
        purified = apply_filter(self.purifier, images, rng=self.rng, color_order=self.color_order)
        purified = np.moveaxis(purified, -1, 1) if self.channels_first else purified
        return np.ascontiguousarray(purified).astype(x.dtype, copy=False), y

    def estimate_gradient(self, x: np.ndarray, grad: np.ndarray) -> np.ndarray:
        return grad
