"""Input purification filters against adversarial examples: pixel deflection, wavelet denoising, lossy channels.

Arrays in, arrays out: HxW, HxWxC or NxHxWxC, uint8 or float32 in [0, 1], RGB unless ``color_order="BGR"`` (the
package's one input policy, docs/images.md), same shape and dtype out, input never modified, optional ``dst=`` (a
writeable array), and ``rng=`` (a numpy Generator or an int seed) on every filter. A filter is a callable
``f(image, rng=None, **overrides) -> image``; keywords it does not take raise TypeError::

    from semantic_jpeg.defense_filters import preset, Compose, Filter, majority_vote, pixel_deflection
    purify = preset("pd+rcam+dwt")                # R-CAM-targeted pixel deflection, then wavelet denoising
    clean = purify(image_rgb, rng=0)              # R-CAM from the shipped model, or pass saliency=map
    clean = purify(cv2_image, rng=0, color_order="BGR")                   # OpenCV arrays say their order
    label = majority_vote(classify, image_rgb, purify, draws=10, rng=0)   # Ens-10

Adapters for albumentations, PyTorch (BPDA) and ART live in :mod:`semantic_jpeg.defense_filters.adapters`.
User guide: docs/defenses.md.

References: A. Prakash, N. Moran, S. Garber, A. DiLillo, J. Storer, "Deflecting Adversarial Attacks with Pixel
Deflection", CVPR 2018, and A. Prakash, PhD dissertation, Brandeis University 2019 ("Prakash 2019": the section,
algorithm and table numbers cited in this package); A. Dziedzic, PhD dissertation, University of Chicago 2019
("Dziedzic 2019", lossy channels, ch. 3); S. G. Chang, B. Yu, M. Vetterli, "Adaptive wavelet thresholding for
image denoising and compression", IEEE TIP 2000 (BayesShrink); D. Donoho, I. Johnstone, "Adapting to unknown
smoothness via wavelet shrinkage", JASA 1995 (SureShrink).
"""
from .channels import (
                       color_depth,
                       fft_lowpass,
                       gaussian_noise,
                       jpeg,
                       laplace_noise,
                       median_smoothing,
                       non_local_means,
                       random_resize_pad,
                       semantic_jpeg,
                       svd_truncate,
                       uniform_noise,
)
from .compose import PRESETS, Compose, Filter, apply_filter, majority_vote, preset
from .deflection import pixel_deflection
from .wavelet import wavelet_denoise

__all__ = [
    "pixel_deflection", "wavelet_denoise",
    "jpeg", "semantic_jpeg", "fft_lowpass", "color_depth", "svd_truncate",
    "gaussian_noise", "uniform_noise", "laplace_noise", "median_smoothing", "non_local_means", "random_resize_pad",
    "Filter", "Compose", "apply_filter", "PRESETS", "preset", "majority_vote",
]
