"""The defenses compared on the same adversarial images: ours (``semantic_jpeg.defense_filters`` presets and
lossy channels), ART's peer preprocessors, and the ablations of Prakash et al. (CVPR 2018; thesis Tables 4.7-4.11).

Every defense is a callable ``apply(images, rng, **overrides)`` on float32 RGB ``N x H x W x 3`` in [0,1]
returning the same; ``stochastic`` defenses are scored over several draws (Ens-10).

One registry: the settings of our presets are read from ``semantic_jpeg.defense_filters.PRESETS`` (the filters
the presets build), never restated here, and they are a defense's ``params``, which enter its cache keys. So a
changed preset changes the keys of every defense and ablation column built on it, and stale cached results are
not reused. (The keys still do not see the code of a filter: after changing what a filter computes, delete its
cache folder.)"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class DefenseSpec:
    """``make()`` builds the filter; ``params`` names its settings in reports and cache keys; ``rcam``: the
    filter takes the R-CAM of its input as ``saliency=`` (computed once per image, not per draw);
    ``max_draws`` caps the draws of a stochastic defense too slow for Ens-k on CPU."""
    label: str
    group: str
    make: Callable[[], Callable]
    params: dict = field(default_factory=dict)
    stochastic: bool = False
    rcam: bool = False
    max_draws: int | None = None


def _ours(factory: Callable, **settings) -> Callable[[], Callable]:
    """A defense_filters filter on RGB batches."""
    def make():
        from semantic_jpeg.defense_filters import apply_filter
        purifier = factory(**settings)
        return lambda images, rng, **overrides: apply_filter(purifier, images, rng=rng, color_order="RGB",
                                                              **overrides)
    return make


def _preset(name: str) -> Callable[[], Callable]:
    def factory():
        from semantic_jpeg.defense_filters import preset
        return preset(name)
    return _ours(factory)


# Defaults of a step function that are recorded in ``params`` although a preset leaves them unset: they define what
# the step computes (the semantic JPEG's quantisation levels and quality range).
_RECORDED_DEFAULTS = {"semantic_jpeg": ("levels", "quality_range")}


def filter_params(purifier) -> dict:
    """The settings of a ``defense_filters`` :class:`Filter` or :class:`Compose` as a flat, JSON-ready dict: each
    step's explicit settings merged in order, plus the :data:`_RECORDED_DEFAULTS` of its function. Tuples become
    lists (as JSON writes them)."""
    import inspect

    from semantic_jpeg.defense_filters import Compose, Filter

    steps = purifier.filters if isinstance(purifier, Compose) else (purifier,)
    params: dict = {}
    for step in steps:
        if not isinstance(step, Filter):
            raise TypeError(f"{step!r} is not a defense_filters Filter: its settings cannot be read")
        signature = inspect.signature(step.func).parameters
        for name in _RECORDED_DEFAULTS.get(step.func.__name__, ()):
            params[name] = signature[name].default
        params.update(step.settings)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}


def preset_params(name: str) -> dict:
    """The settings of the ``defense_filters`` preset ``name``, read from its registry (see :func:`filter_params`)."""
    from semantic_jpeg.defense_filters import preset

    return filter_params(preset(name))


def _filter(func_name: str, **settings) -> Callable[[], Callable]:
    def factory():
        from semantic_jpeg import defense_filters
        return defense_filters.Filter(getattr(defense_filters, func_name), **settings)
    return _ours(factory)


def _chain(*steps: tuple[str, dict]) -> Callable[[], Callable]:
    def factory():
        from semantic_jpeg import defense_filters
        return defense_filters.Compose(*(defense_filters.Filter(getattr(defense_filters, name), **settings)
                                         for name, settings in steps))
    return _ours(factory)


def _art(class_name: str, **settings) -> Callable[[], Callable]:
    """An ART preprocessor on NHWC [0,1]; ART draws from numpy's global generator, seeded from ``rng``."""
    def make():
        from art.defences import preprocessor
        defence = getattr(preprocessor, class_name)(clip_values=(0.0, 1.0), **settings)

        def apply(images, rng, **_):
            np.random.seed(int(rng.integers(2**32)))
            return defence(np.ascontiguousarray(images, np.float32))[0].astype(np.float32)
        return apply
    return make


def _skimage_tv(weight: float) -> Callable[[], Callable]:
    def make():
        from skimage.restoration import denoise_tv_chambolle
        return lambda images, rng, **_: np.stack(
            [denoise_tv_chambolle(im, weight=weight, channel_axis=-1) for im in images]).astype(np.float32)
    return make


def _bilateral(sigma_color: float, sigma_space: float) -> Callable[[], Callable]:
    def make():
        import cv2
        return lambda images, rng, **_: np.stack(
            [cv2.bilateralFilter(im, 5, sigma_color, sigma_space) for im in images]).astype(np.float32)
    return make


def _then(first: Callable[[], Callable], second: Callable[[], Callable]) -> Callable[[], Callable]:
    def make():
        a, b = first(), second()
        return lambda images, rng, **overrides: b(a(images, rng, **overrides), rng, **overrides)
    return make


PD = preset_params("pd")     # pixel deflection: K, r (Prakash et al., CVPR 2018: K=100, r=10)
WD = preset_params("dwt")    # wavelet denoising: sigma, BayesShrink, soft, db1, YCbCr
JPEG = preset_params("jpeg")  # JPEG round trip: quality
JPEG_Q = JPEG["quality"]


def _preset_spec(name: str, label: str, group: str = "ours", stochastic: bool = False) -> DefenseSpec:
    """A main-comparison defense that is a ``defense_filters`` preset: its params come from the preset registry."""
    params = preset_params(name)
    return DefenseSpec(label, group, _preset(name), params, stochastic, rcam=params.get("saliency") == "rcam")


def _semantic_filter(saliency: str, **settings) -> tuple[Callable[[], Callable], dict]:
    """A semantic JPEG filter (not a preset) and its params, read from the filter like a preset's."""
    from semantic_jpeg import defense_filters

    params = filter_params(defense_filters.Filter(defense_filters.semantic_jpeg, saliency=saliency, **settings))
    return _filter("semantic_jpeg", saliency=saliency, **settings), params

# Main comparison: our presets, every lossy channel at the filters' defaults, ART's peers.
DEFENSES: dict[str, DefenseSpec] = {
    "pd": _preset_spec("pd", "PD", stochastic=True),
    "pd+rcam": _preset_spec("pd+rcam", "PD + R-CAM", stochastic=True),
    "pd+rcam+dwt": _preset_spec("pd+rcam+dwt", "PD + R-CAM + DWT", stochastic=True),
    "jpeg": _preset_spec("jpeg", f"JPEG Q{JPEG_Q}"),
    "msroi-jpeg": DefenseSpec("MS-ROI semantic JPEG", "ours", *_semantic_filter("msroi")),
    "aug-msroi-jpeg": _preset_spec("aug-msroi-jpeg", "Aug-MSROI semantic JPEG", stochastic=True),
    "fft-lowpass": DefenseSpec("FC: FFT low-pass 50%", "lossy channel", _filter("fft_lowpass", compression=0.5),
                               {"compression": 0.5}),
    "color-depth": DefenseSpec("CD: colour depth 4 bit", "lossy channel", _filter("color_depth", bits=4),
                               {"bits": 4}),
    "svd": DefenseSpec("SVD rank 32", "lossy channel", _filter("svd_truncate", rank=32), {"rank": 32}),
    "gaussian": DefenseSpec("Gauss sigma 0.05", "lossy channel", _filter("gaussian_noise", sigma=0.05),
                            {"sigma": 0.05}, True),
    "uniform": DefenseSpec("Unif bound 0.05", "lossy channel", _filter("uniform_noise", bound=0.05),
                           {"bound": 0.05}, True),
    "laplace": DefenseSpec("Laplace scale 0.03", "lossy channel", _filter("laplace_noise", scale=0.03),
                           {"scale": 0.03}, True),
    "art-jpeg": DefenseSpec("ART JpegCompression Q75", "peer (ART)", _art("JpegCompression", quality=75,
                                                                           channels_first=False), {"quality": 75}),
    "art-squeeze": DefenseSpec("ART FeatureSqueezing 5 bit", "peer (ART)", _art("FeatureSqueezing", bit_depth=5),
                               {"bit_depth": 5}),
    "art-smooth": DefenseSpec("ART SpatialSmoothing 3x3", "peer (ART)",
                              _art("SpatialSmoothing", window_size=3, channels_first=False), {"window_size": 3}),
    "art-tvm": DefenseSpec("ART TotalVarMin", "peer (ART)",
                           _art("TotalVarMin", prob=0.3, norm=2, lamb=0.5, max_iter=10),
                           {"prob": 0.3, "norm": 2, "lamb": 0.5, "max_iter": 10}, True, max_draws=1),
}
DEFAULT_DEFENSES = tuple(DEFENSES)
LOSSY_CHANNELS = tuple(k for k, v in DEFENSES.items() if v.group == "lossy channel")


def _pd_wd(deflections=100, window=10, method="BayesShrink", mode="soft", rcam=True, sigma=WD["sigma"],
           per_channel=False, sigma_mode="rgb") -> DefenseSpec:
    """PD (+R-CAM) then wavelet denoising; settings left at their defaults stay out of the label and params, so
    the cache keys of the older columns are unchanged."""
    pd = {"deflections": deflections, "window": window, **({"saliency": "rcam"} if rcam else {}),
          **({"per_channel": True} if per_channel else {})}
    wd = {**WD, "method": method, "mode": mode, "sigma": sigma, **({} if sigma_mode == "rgb" else
                                                                    {"sigma_mode": sigma_mode})}
    extra = ("" if sigma == WD["sigma"] else f" sigma={sigma}") + (" per-channel" if per_channel else "") + \
        ("" if sigma_mode == "rgb" else f" sigma_mode={sigma_mode}")
    return DefenseSpec(f"PD(K={deflections}, r={window}) + {mode} {method}{extra}", "ablation",
                       _chain(("pixel_deflection", pd), ("wavelet_denoise", wd)), {**pd, **wd}, True, rcam)


def _pd_then(label: str, second: Callable[[], Callable], params: dict) -> DefenseSpec:
    return DefenseSpec(label, "ablation", _then(_filter("pixel_deflection", **PD), second), {**PD, **params}, True)


def _semantic(saliency: str, low: int, high: int) -> DefenseSpec:
    """A semantic JPEG column of the Table 3.1 setting; the shipped 30-70 range is the main comparison's row."""
    name = {"msroi": "msroi-jpeg", "aug-msroi": "aug-msroi-jpeg"}[saliency]
    if (low, high) == (30, 70):
        return DEFENSES[name]
    make, params = _semantic_filter(saliency, quality_range=(low, high))
    return DefenseSpec(f"{DEFENSES[name].label} {low}-{high}", "ablation", make, params, DEFENSES[name].stochastic)


JPEG_QUALITIES = (10, 20, 30, 40, 50, 75, 90)
SEMANTIC_RANGES = ((5, 25), (10, 40), (20, 50), (30, 70), (50, 90))
TABLE_31_JPEG = "Table 3.1 setting: JPEG quality (Figure 3.2a)"
TABLE_31_SEMANTIC = "Table 3.1 setting: semantic JPEG quality ranges"

# Ablations (Prakash, thesis Tables 3.1, 4.7-4.11): table name -> {column label: defense}
ABLATIONS: dict[str, dict[str, DefenseSpec]] = {
    # Table 3.1 protocol: the JPEG quality with the best adversarial accuracy, the semantic JPEGs at the range whose
    # image quality is closest to it (chosen in report.table_31_choice)
    TABLE_31_JPEG: {f"Q={q}": DEFENSES["jpeg"] if q == JPEG_Q else
                    DefenseSpec(f"JPEG Q{q}", "ablation", _filter("jpeg", quality=q), {"quality": q})
                    for q in JPEG_QUALITIES},
    TABLE_31_SEMANTIC: {f"{codec} {lo}-{hi}": _semantic(saliency, lo, hi)
                        for codec, saliency in (("MS-ROI", "msroi"), ("Aug-MSROI", "aug-msroi"))
                        for lo, hi in SEMANTIC_RANGES},
    # The authors' released code (iamaaditya/pixel-deflection) differs from the text in two ways: its first versions
    # deflect each channel separately, and scikit-image 0.14 took sigma relative to each YCbCr channel's range.
    "Table 4.1 setting: the paper's text vs the authors' released code (PD+R-CAM+WD)": {
        "text": _pd_wd(), "per-channel PD": _pd_wd(per_channel=True),
        "channel-range sigma": _pd_wd(sigma_mode="channel-range"),
        "code (both)": _pd_wd(per_channel=True, sigma_mode="channel-range")},
    "Table 4.7: PD with wavelet denoising (WD) and JPEG": {
        "JPEG": DEFENSES["jpeg"],
        "WD": DefenseSpec("WD", "ablation", _preset("dwt"), WD),
        "PD": DEFENSES["pd"],
        "PD+JPG": DefenseSpec("PD+JPG", "ablation", _chain(("pixel_deflection", PD), ("jpeg", JPEG)),
                              {**PD, **JPEG}, True),
        "PD+WD+JPG": DefenseSpec("PD+WD+JPG", "ablation",
                                 _chain(("pixel_deflection", PD), ("wavelet_denoise", WD), ("jpeg", JPEG)),
                                 {**PD, **WD, **JPEG}, True),
        "PD+WD": _pd_wd(rcam=False),
    },
    "Table 4.8: thresholding after PD (+R-CAM)": {
        "Hard": _pd_wd(mode="hard"), "Visu": _pd_wd(method="VisuShrink"),
        "Sure": _pd_wd(method="SureShrink"), "Bayes": _pd_wd(),
    },
    "Table 4.8 setting: BayesShrink noise sigma after PD+R-CAM (clean accuracy vs recovery)": {
        f"sigma={sigma}": _pd_wd(sigma=sigma) for sigma in (0.01, 0.02, 0.03, 0.04, 0.06)},
    "Table 4.9: deflections K (r=10, +R-CAM+WD)": {f"K={k}": _pd_wd(deflections=k) for k in (10, 100, 1000)},
    "Table 4.10: window r (K=100, +R-CAM+WD)": {f"r={r}": _pd_wd(window=r) for r in (5, 10, 50, 100)},
    "Table 4.11: denoiser after PD": {
        "Bilateral": _pd_then("PD+bilateral", _bilateral(0.1, 5.0), {"bilateral": [5, 0.1, 5.0]}),
        "TVM": _pd_then("PD+TV (Chambolle)", _skimage_tv(0.05), {"tv_weight": 0.05}),
        "Median": _pd_then("PD+median 3x3", _filter("median_smoothing", size=3), {"median": 3}),
        "Wavelet": _pd_wd(rcam=False),
    },
}
