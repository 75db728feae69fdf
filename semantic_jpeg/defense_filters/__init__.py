"""Input purification filters against adversarial examples, OpenCV-style (SPEC sec 2.3).

Arrays in, arrays out: HxW, HxWxC or NxHxWxC, uint8 or float32 in [0, 1], BGR by default (``color_order=``),
same shape and dtype out, input never modified, optional ``dst=``, and ``rng=`` (a numpy Generator or an int
seed) on every filter. A filter is a callable ``f(image, rng=None, **overrides) -> image``::

    from semantic_jpeg.defense_filters import preset, Compose, Filter, majority_vote, pixel_deflection
    purify = preset("pd+rcam+dwt")                # paper 000 sec 4.8: R-CAM-targeted PD, then wavelet denoising
    clean = purify(image_bgr, rng=0)              # R-CAM from the shipped model, or pass saliency=map
    label = majority_vote(classify, image_bgr, purify, draws=10, rng=0)   # Ens-10

Adapters for albumentations, PyTorch (BPDA) and ART live in :mod:`semantic_jpeg.defense_filters.adapters`.
"""
from .channels import (color_depth, fft_lowpass, gaussian_noise, jpeg, laplace_noise, median_smoothing,
                       non_local_means, random_resize_pad, semantic_jpeg, svd_truncate, uniform_noise)
from .compose import PRESETS, Compose, Filter, apply_filter, majority_vote, preset
from .deflection import pixel_deflection
from .wavelet import wavelet_denoise

__all__ = [
    "pixel_deflection", "wavelet_denoise",
    "jpeg", "semantic_jpeg", "fft_lowpass", "color_depth", "svd_truncate",
    "gaussian_noise", "uniform_noise", "laplace_noise", "median_smoothing", "non_local_means", "random_resize_pad",
    "Filter", "Compose", "apply_filter", "PRESETS", "preset", "majority_vote",
]
