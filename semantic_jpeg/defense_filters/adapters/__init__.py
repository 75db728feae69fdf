"""Adapters of the purification filters to other frameworks, each an optional dependency imported on use:

- :class:`PurifyTransform` (albumentations ``ImageOnlyTransform``; RGB images as albumentations uses them),
- :class:`PurifyModule` (torch ``nn.Module`` on BCHW [0, 1] tensors, straight-through / BPDA backward),
- :class:`PurifyPreprocessor` (ART ``Preprocessor``, identity ``estimate_gradient``).

Each wraps any filter ``f(image, rng=None, **overrides)``, e.g. ``preset("pd+rcam+dwt")``, and reads RGB, the order
these frameworks use; a pipeline that feeds OpenCV BGR arrays passes ``color_order="BGR"`` (docs/defenses.md).
"""
_ADAPTERS = {
    "PurifyTransform": "albumentations_transform",
    "PurifyModule": "torch_module",
    "PurifyPreprocessor": "art_preprocessor",
}


def __getattr__(name):
    if name in _ADAPTERS:
        from importlib import import_module

        return getattr(import_module(f"{__name__}.{_ADAPTERS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = list(_ADAPTERS)
