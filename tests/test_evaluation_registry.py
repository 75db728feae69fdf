"""The evaluation's defense specs take their settings from the defense_filters preset registry, so a changed preset
changes the cache keys of every defense and ablation column built on it."""
import importlib

import pytest

from semantic_jpeg import defense_filters
from semantic_jpeg.defense_filters import Compose, Filter, pixel_deflection, wavelet_denoise
from semantic_jpeg.defense_filters import compose as compose_module
from semantic_jpeg.evaluation import defenses as defenses_module
from semantic_jpeg.evaluation.cache import digest


def _key(spec, name="x"):
    return digest("defense", name, spec.params, 10, 0, "image-key")


def test_preset_defenses_carry_the_presets_settings():
    d = defenses_module
    for name in ("pd", "pd+rcam", "pd+rcam+dwt", "jpeg", "aug-msroi-jpeg"):
        built = defense_filters.preset(name)
        steps = built.filters if isinstance(built, Compose) else (built,)
        for step in steps:
            for setting, value in step.settings.items():
                expected = list(value) if isinstance(value, tuple) else value
                assert d.DEFENSES[name].params[setting] == expected, (name, setting)
    assert d.DEFENSES["pd+rcam+dwt"].rcam and not d.DEFENSES["pd"].rcam
    # the semantic JPEG's quantisation settings are recorded although the preset leaves them at their defaults
    assert d.DEFENSES["aug-msroi-jpeg"].params == {"saliency": "aug-msroi", "levels": 5, "quality_range": [30, 70]}
    assert d.DEFENSES["jpeg"].label == f"JPEG Q{d.JPEG['quality']}"


def test_changed_preset_changes_cache_keys(monkeypatch):
    before = {name: _key(spec, name) for name, spec in defenses_module.DEFENSES.items()}
    table_47 = "Table 4.7: PD with wavelet denoising (WD) and JPEG"
    before_ablation = {c: _key(s, c) for c, s in defenses_module.ABLATIONS[table_47].items()}
    monkeypatch.setitem(compose_module.PRESETS, "pd", lambda: Filter(pixel_deflection, deflections=7, window=10))
    monkeypatch.setitem(compose_module.PRESETS, "pd+rcam+dwt", lambda: Compose(
        Filter(pixel_deflection, deflections=100, window=10, saliency="rcam"),
        Filter(wavelet_denoise, sigma=0.05, method="BayesShrink", mode="soft", wavelet="db1", ycbcr=True)))
    try:
        changed = importlib.reload(defenses_module)
        after = {name: _key(spec, name) for name, spec in changed.DEFENSES.items()}
        assert changed.DEFENSES["pd"].params["deflections"] == 7
        assert after["pd"] != before["pd"] and after["pd+rcam+dwt"] != before["pd+rcam+dwt"]
        assert after["jpeg"] == before["jpeg"] and after["svd"] == before["svd"]  # untouched presets keep their keys
        # ablation columns built on the "pd" preset's settings follow it too
        after_ablation = {c: _key(s, c) for c, s in changed.ABLATIONS[table_47].items()}
        assert after_ablation["PD+JPG"] != before_ablation["PD+JPG"]
        assert after_ablation["JPEG"] == before_ablation["JPEG"]
    finally:
        monkeypatch.undo()
        importlib.reload(defenses_module)
    assert {name: _key(spec, name) for name, spec in defenses_module.DEFENSES.items()} == before


def test_filter_params_refuses_what_it_cannot_read():
    with pytest.raises(TypeError, match="not a defense_filters Filter"):
        defenses_module.filter_params(Compose(lambda image, rng=None: image))
