"""PyTorch adapter: a purification filter as an ``nn.Module`` with a straight-through (BPDA) backward."""
from __future__ import annotations

import numpy as np
import torch

from .._conventions import as_generator, check_color_order, clip_unit_range
from ..compose import apply_filter


class _StraightThrough(torch.autograd.Function):
    """Forward: the (non-differentiable) filter. Backward: identity, i.e. BPDA (Athalye et al. 2018)."""

    @staticmethod
    def forward(ctx, images, module):
        array = images.detach().to("cpu", torch.float32).permute(0, 2, 3, 1).contiguous().numpy()
        array = clip_unit_range(array, "PurifyModule input")
        purified = apply_filter(module.purifier, array, rng=module.rng, color_order=module.color_order)
        return torch.from_numpy(np.ascontiguousarray(purified)).permute(0, 3, 1, 2).to(images.device, images.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output, None


class PurifyModule(torch.nn.Module):
    """``purifier`` on BCHW tensors in [0, 1] (RGB unless ``color_order="BGR"``); the gradient passes straight
    through, so adaptive attacks can use BPDA (+ EOT by averaging over draws). ``rng``: seed or Generator.

    Put it before the classifier's mean/std normalisation: a floating-point tensor in [0, 1] is required (an
    integer tensor is a TypeError, values outside [0, 1] beyond float error a ValueError), never silently
    clipped."""

    def __init__(self, purifier, *, color_order: str = "RGB", rng=None):
        super().__init__()
        if not callable(purifier):
            raise TypeError("purifier must be a callable filter")
        self.purifier = purifier
        self.color_order = check_color_order(color_order)
        self.rng = as_generator(rng)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4:
            raise ValueError(f"PurifyModule expects a BCHW tensor, got shape {tuple(images.shape)}")
        if not images.is_floating_point():
            raise TypeError(f"PurifyModule expects a floating-point tensor in [0, 1], got {images.dtype} "
                            "(convert 0..255 pixels with images.float() / 255)")
        return _StraightThrough.apply(images, self)
