"""Filters with fixed settings, their composition, the papers' presets and the majority-vote ensemble.

A *filter* is any callable ``f(image, rng=None, **overrides) -> image``. :class:`Filter` binds a function of
this package to its settings; :class:`Compose` chains filters with one random stream; :func:`preset` returns
the papers' configurations; :func:`majority_vote` is Ens-T (Prakash 2019 Tables 4.1-4.5, Dziedzic 2019 sec 3.2.1).
"""
from __future__ import annotations

import inspect

import numpy as np

from ._conventions import as_generator, check_image, check_integer
from .channels import jpeg, semantic_jpeg
from .deflection import pixel_deflection
from .wavelet import wavelet_denoise


def accepted_keywords(purifier):
    """The keywords a filter takes at call time besides the image and ``rng``: a frozenset, or None when it takes
    any (``**kwargs``)."""
    if isinstance(purifier, (Filter, Compose)):
        return purifier.accepted
    parameters = inspect.signature(purifier).parameters
    if any(p.kind == p.VAR_KEYWORD for p in parameters.values()):
        return None
    return frozenset(name for name, p in list(parameters.items())[1:] if p.kind != p.VAR_POSITIONAL) - {"rng"}


def check_keywords(purifier, overrides: dict, name: str) -> None:
    """A TypeError naming the ``overrides`` that ``purifier`` does not take (``name`` names the filter)."""
    accepted = accepted_keywords(purifier)
    unknown = set(overrides) - accepted if accepted is not None else set()
    if unknown:
        raise TypeError(f"{name} takes no keyword(s) {sorted(unknown)}; it takes {sorted(accepted)}")


def _applicable(step, overrides: dict) -> dict:
    accepted = accepted_keywords(step)
    return overrides if accepted is None else {k: v for k, v in overrides.items() if k in accepted}


class Filter:
    """``func`` with fixed keyword settings, called as ``f(image, rng=None, **overrides)``.

    Overrides replace settings for one call. A keyword ``func`` does not take raises TypeError (a misspelt
    ``saliancy=`` must not be ignored); inside a :class:`Compose`, each step receives the keywords it takes, and a
    keyword that no step takes raises.
    """

    def __init__(self, func, **settings):
        self.func = func
        self.settings = settings
        parameters = inspect.signature(func).parameters
        self.accepted = (None if any(p.kind == p.VAR_KEYWORD for p in parameters.values())
                         else frozenset(list(parameters)[1:]) - {"rng"})  # all but the image
        unknown = set(settings) - self.accepted if self.accepted is not None else set()
        if unknown:
            raise TypeError(f"{func.__name__} takes no setting(s) {sorted(unknown)}")

    def __call__(self, image, rng=None, **overrides):
        check_keywords(self, overrides, repr(self))
        return self.func(image, rng=rng, **{**self.settings, **overrides})

    def __repr__(self):
        settings = ", ".join(f"{k}={v!r}" for k, v in self.settings.items())
        return f"Filter({self.func.__name__}{', ' if settings else ''}{settings})"


def apply_filter(purifier, image, *, rng=None, **overrides):
    """Call any filter with the ``overrides`` it takes, dropping the others (for callers that pass context to
    filters of any kind, e.g. the adapters' ``color_order``). Call the filter directly to have unknown keywords
    raise."""
    return purifier(image, rng=rng, **_applicable(purifier, overrides))


class Compose:
    """Apply filters in order; one Generator feeds all random steps; ``dst`` receives the last step's output.

    Call keywords go to the steps that take them (``saliency=`` to a pixel deflection step, ``sigma=`` to a
    wavelet step, ``color_order=`` to both); a keyword that no step takes raises TypeError."""

    def __init__(self, *filters):
        if not filters or not all(callable(f) for f in filters):
            raise TypeError("Compose needs one or more callable filters")
        self.filters = filters
        steps = [accepted_keywords(f) for f in filters]
        self.accepted = None if any(a is None for a in steps) else frozenset().union(*steps) | {"dst"}

    def __call__(self, image, rng=None, *, dst=None, **overrides):
        check_keywords(self, overrides, repr(self))
        rng = as_generator(rng)
        for index, step in enumerate(self.filters):
            last = index == len(self.filters) - 1
            image = step(image, rng=rng, **_applicable(step, overrides),
                         **({"dst": dst} if last and dst is not None else {}))
        return image

    def __repr__(self):
        return f"Compose({', '.join(map(repr, self.filters))})"


# Paper 000 sec 4.8 / Table 4.1: K=100 deflections, window apothem r=10, BayesShrink soft, db1, YCbCr, sigma=0.04.
_PD = dict(deflections=100, window=10)
_WD = dict(sigma=0.04, method="BayesShrink", mode="soft", wavelet="db1", ycbcr=True)

PRESETS = {
    "pd": lambda: Filter(pixel_deflection, **_PD),
    "pd+rcam": lambda: Filter(pixel_deflection, **_PD, saliency="rcam"),
    "pd+dwt": lambda: Compose(Filter(pixel_deflection, **_PD), Filter(wavelet_denoise, **_WD)),
    "pd+rcam+dwt": lambda: Compose(Filter(pixel_deflection, **_PD, saliency="rcam"), Filter(wavelet_denoise, **_WD)),
    "dwt": lambda: Filter(wavelet_denoise, **_WD),
    "jpeg": lambda: Filter(jpeg, quality=75),
    "aug-msroi-jpeg": lambda: Filter(semantic_jpeg, saliency="aug-msroi"),
}


def preset(name: str):
    """A filter with a paper's settings: one of ``PRESETS`` ("pd", "pd+rcam", "pd+rcam+dwt", "aug-msroi-jpeg",
    and the ablation steps "pd+dwt", "dwt", "jpeg"). The "rcam"/"aug-msroi" maps come from the shipped model
    unless a ``saliency=`` array or callable is passed at call time. Call keywords must apply to the preset: e.g.
    ``preset("pd")(image, sigma=0.5)`` raises TypeError (pixel deflection has no sigma)."""
    try:
        return PRESETS[name]()
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}") from None


def majority_vote(classifier, image, purifier, draws: int = 10, *, rng=None, return_votes: bool = False, **overrides):
    """Ens-T: classify ``draws`` purified copies of ``image`` and return the most frequent label.

    classifier: callable on a batch (T, H, W, C) returning T integer labels or a (T, classes) score array.
    image: one image (HxW[xC]) or a batch (N, ...), giving one label or N labels; ties go to the smallest label.
    ``overrides`` (e.g. ``saliency=``, ``color_order=``) are passed to every purifier call (a keyword it does not
    take raises). With
    ``return_votes`` also returns the per-draw labels, shape (T,) or (N, T).
    """
    draws = check_integer(draws, "draws", 1)
    image = check_image(image)
    rng = as_generator(rng)
    if image.ndim == 4:
        results = [majority_vote(classifier, single, purifier, draws, rng=rng, return_votes=True, **overrides)
                   for single in image]
        labels = np.array([label for label, _ in results])
        return (labels, np.stack([votes for _, votes in results])) if return_votes else labels
    batch = np.stack([purifier(image, rng=rng, **overrides) for _ in range(draws)])
    predictions = np.asarray(classifier(batch))
    if predictions.ndim == 2:
        if np.issubdtype(predictions.dtype, np.floating) and not np.isfinite(predictions).all():
            raise ValueError("classifier returned NaN or infinite scores")
        predictions = predictions.argmax(axis=1)
    if predictions.shape != (draws,) or not np.issubdtype(predictions.dtype, np.integer):
        raise ValueError(f"classifier must return {draws} integer labels or a ({draws}, classes) score array, "
                         f"got {predictions.dtype} {predictions.shape}")
    values, counts = np.unique(predictions, return_counts=True)  # any labels, negative or large
    label = int(values[counts.argmax()])  # ties: the smallest label (values are sorted)
    return (label, predictions) if return_votes else label
