"""albumentations adapter: a purification filter as an ``ImageOnlyTransform`` (pip install albumentations)."""
from __future__ import annotations

from typing import Any

import albumentations as A
import numpy as np

from .._conventions import check_color_order
from ..compose import apply_filter


class PurifyTransform(A.ImageOnlyTransform):
    """Apply ``purifier`` to the image with probability ``p``.

    albumentations passes RGB uint8 or float32 [0, 1] images, so the filter is called with ``color_order="RGB"``
    (override with ``color_order=``). Randomness comes from the pipeline's generator, so
    ``A.Compose([...], seed=s)`` makes runs reproducible.
    """

    def __init__(self, purifier, *, color_order: str = "RGB", p: float = 1.0):
        super().__init__(p=p)
        if not callable(purifier):
            raise TypeError("purifier must be a callable filter")
        self.purifier = purifier
        self.color_order = check_color_order(color_order)

    def get_params(self) -> dict[str, Any]:
        return {"seed": int(self.random_generator.integers(2**63))}

    def apply(self, img: np.ndarray, seed: int = 0, **params) -> np.ndarray:
        return apply_filter(self.purifier, img, rng=seed, color_order=self.color_order)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("purifier", "color_order")
