"""Adapters of the purification filters: albumentations, torch (BPDA) and ART round trips."""
import numpy as np
import pytest

from semantic_jpeg import defense_filters as df
from semantic_jpeg.defense_filters import adapters


@pytest.fixture
def rgb():
    return np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)


def test_albumentations_transform(rgb):
    A = pytest.importorskip("albumentations")
    purify = df.Filter(df.pixel_deflection, deflections=200, window=3)
    pipeline = A.Compose([adapters.PurifyTransform(purify)], seed=5)
    first = pipeline(image=rgb)["image"]
    assert first.shape == rgb.shape and first.dtype == np.uint8 and (first != rgb).any()
    np.testing.assert_array_equal(first, A.Compose([adapters.PurifyTransform(purify)], seed=5)(image=rgb)["image"])
    wavelet = A.Compose([adapters.PurifyTransform(df.wavelet_denoise)])(image=rgb)["image"]
    np.testing.assert_array_equal(wavelet, df.wavelet_denoise(rgb, color_order="RGB"))
    assert A.Compose([adapters.PurifyTransform(purify, p=0.0)])(image=rgb)["image"] is not None


def test_torch_module_forward_and_straight_through_backward(rgb):
    torch = pytest.importorskip("torch")
    images = torch.from_numpy(np.stack([rgb, rgb[::-1].copy()]).astype(np.float32) / 255).permute(0, 3, 1, 2)
    images.requires_grad_(True)
    module = adapters.PurifyModule(df.wavelet_denoise)
    out = module(images)
    expected = df.wavelet_denoise(np.stack([rgb, rgb[::-1]]).astype(np.float32) / 255, color_order="RGB")
    np.testing.assert_allclose(out.detach().permute(0, 2, 3, 1).numpy(), expected)
    weights = torch.randn_like(out)
    (out * weights).sum().backward()
    torch.testing.assert_close(images.grad, weights)  # identity backward (BPDA)
    noisy = adapters.PurifyModule(df.preset("pd"), rng=1)
    assert not torch.equal(noisy(images), noisy(images))  # fresh draws per call
    with pytest.raises(ValueError):
        module(images[0])


def test_art_preprocessor(rgb):
    pytest.importorskip("art")
    x = np.stack([rgb, rgb]).astype(np.float32) / 255
    pre = adapters.PurifyPreprocessor(df.Filter(df.jpeg, quality=30))
    out, y = pre(x, np.array([1, 2]))
    np.testing.assert_allclose(out, df.jpeg(x, 30, color_order="RGB"))
    np.testing.assert_array_equal(y, [1, 2])
    first = adapters.PurifyPreprocessor(df.median_smoothing, channels_first=True)
    out_cf, _ = first(np.moveaxis(x, -1, 1))
    np.testing.assert_allclose(np.moveaxis(out_cf, 1, -1), df.median_smoothing(x))
    grad = np.random.default_rng(1).normal(size=x.shape).astype(np.float32)
    np.testing.assert_array_equal(pre.estimate_gradient(x, grad), grad)
    assert pre.apply_predict and not pre.apply_fit


def test_torch_and_art_adapters_refuse_pixels_outside_zero_one_instead_of_clipping(rgb):
    """uint8 tensors and mean/std-normalised tensors are the usual mistakes: refused, never clipped into a
    ruined image; float error just outside [0, 1] (an attack's clipped step) is still accepted."""
    torch = pytest.importorskip("torch")
    module = adapters.PurifyModule(df.Filter(df.jpeg, quality=90))
    x8 = torch.from_numpy(rgb[None]).permute(0, 3, 1, 2)
    with pytest.raises(TypeError, match="floating-point"):
        module(x8)
    normalised = (x8.float() / 255 - 0.45) / 0.225
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        module(normalised)
    nearly = x8.float() / 255
    nearly[0, 0, 0, 0], nearly[0, 1, 0, 0] = -1e-6, 1 + 1e-6
    torch.testing.assert_close(module(nearly), module(nearly.clamp(0, 1)))
    pytest.importorskip("art")
    pre = adapters.PurifyPreprocessor(df.Filter(df.jpeg, quality=90))
    with pytest.raises(TypeError, match="float"):
        pre(rgb[None])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        pre(rgb[None].astype(np.float32))
    with pytest.raises(ValueError, match="NaN"):
        pre(np.full((1, 8, 8, 3), np.nan, np.float32))


def test_adapters_check_and_apply_the_colour_order(rgb):
    """RGB by default like the rest of the package; color_order="BGR" for OpenCV-fed pipelines; a bad order is
    refused when the adapter is built, not at the first image."""
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    jpeg30 = df.Filter(df.jpeg, quality=30)
    A = pytest.importorskip("albumentations")
    np.testing.assert_array_equal(A.Compose([adapters.PurifyTransform(jpeg30, color_order="BGR")])(image=bgr)["image"],
                                  df.jpeg(rgb, 30)[:, :, ::-1])
    with pytest.raises(ValueError, match="color_order"):
        adapters.PurifyTransform(jpeg30, color_order="BRG")
    torch = pytest.importorskip("torch")
    batch = torch.from_numpy(bgr[None].astype(np.float32) / 255).permute(0, 3, 1, 2)
    out = adapters.PurifyModule(jpeg30, color_order="BGR")(batch).permute(0, 2, 3, 1).numpy()[0]
    np.testing.assert_allclose(out, df.jpeg(rgb.astype(np.float32) / 255, 30)[:, :, ::-1])
    with pytest.raises(ValueError, match="color_order"):
        adapters.PurifyModule(jpeg30, color_order="bgra")


def test_docs_defenses_examples_run(tmp_path, monkeypatch):
    """docs/defenses.md's python blocks run as written, in order, in one namespace."""
    import re
    from pathlib import Path

    for module in ("onnxruntime", "albumentations", "torch", "art", "skimage"):
        pytest.importorskip(module)
    page = (Path(__file__).resolve().parents[1] / "docs" / "defenses.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```python\n(.*?)^```", page, re.MULTILINE | re.DOTALL)
    assert len(blocks) >= 4
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "docs_defenses"}
    for index, block in enumerate(blocks):
        exec(compile(block, f"docs/defenses.md block {index + 1}", "exec"), namespace)  # noqa: S102
    image = namespace["image"]
    assert namespace["clean"].shape == image.shape and namespace["label"] in (0, 1)
    assert namespace["augmented"].shape == image.shape and tuple(namespace["purified"].shape) == (1, 3, 512, 512)
    assert namespace["x_purified"].shape == (1, 512, 512, 3)
