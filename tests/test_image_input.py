"""The one input policy (semantic_jpeg.image_input, docs/images.md), and codec, models and filters following it."""
import io

import numpy as np
import pytest
from PIL import Image
from skimage import data

import semantic_jpeg
from semantic_jpeg import defense_filters as df
from semantic_jpeg.image_input import check_color_order, flatten_alpha, to_array


@pytest.fixture(scope="module")
def rgb():
    return np.ascontiguousarray(data.astronaut()[::4, ::4])  # 128x128 RGB uint8


# ---------------------------------------------------------------- the policy itself


def test_color_order_rgb_by_default_bgr_on_request(rgb):
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    assert to_array(rgb) is rgb  # no copy when nothing changes
    np.testing.assert_array_equal(to_array(bgr, "BGR"), rgb)
    np.testing.assert_array_equal(to_array(bgr, "bgr"), rgb)
    assert check_color_order("rgb") == "RGB"
    for bad in ("RBG", "RGBA", None, 3):
        with pytest.raises(ValueError, match="color_order"):
            to_array(rgb, bad)
    # PIL images carry their own order: color_order does not apply
    np.testing.assert_array_equal(to_array(Image.fromarray(rgb), "BGR"), rgb)


@pytest.mark.parametrize("mode", ["L", "RGB", "1", "P", "YCbCr"])
def test_8_bit_pil_modes(rgb, mode):
    image = Image.fromarray(rgb).convert(mode)
    out = to_array(image, keep_gray=True)
    expected = np.asarray(image.convert("L" if mode in ("L", "1") else "RGB"))
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == np.uint8


def test_16_bit_input_is_scaled_to_8_bits(rgb):
    grey = np.asarray(Image.fromarray(rgb).convert("L"))
    sixteen = grey.astype(np.uint16) * 257
    assert Image.fromarray(sixteen).mode == "I;16"
    np.testing.assert_array_equal(to_array(Image.fromarray(sixteen), keep_gray=True), grey)
    np.testing.assert_array_equal(to_array(sixteen, keep_gray=True), grey)
    values = np.array([[0, 128, 129, 385, 386, 65535]], np.uint16)  # round(v / 257): 0, 0, 1, 1, 2, 255
    np.testing.assert_array_equal(to_array(values, keep_gray=True), [[0, 0, 1, 1, 2, 255]])
    colour16 = rgb.astype(np.uint16) * 257
    np.testing.assert_array_equal(to_array(np.ascontiguousarray(colour16[:, :, ::-1]), "BGR"), rgb)


def test_float_input(rgb):
    floats = rgb.astype(np.float64) / 255
    out = to_array(floats)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, floats, atol=1e-7)
    np.testing.assert_array_equal(to_array(floats, uint8=True), rgb)
    pil_f = Image.fromarray(rgb[:, :, 0].astype(np.float32), "F")
    np.testing.assert_array_equal(to_array(pil_f, keep_gray=True), rgb[:, :, 0])
    for bad, match in ((np.full((4, 4), np.nan), "NaN"), (np.full((4, 4), 1.5), r"\[0, 1\]"),
                       (np.full((4, 4), -0.1, np.float32), r"\[0, 1\]")):
        with pytest.raises(ValueError, match=match):
            to_array(bad)
    with pytest.raises(ValueError, match=r"\[0, 255\]"):
        to_array(Image.fromarray(np.full((4, 4), 300.0, np.float32), "F"))


@pytest.mark.parametrize("image, match", [
    (Image.new("RGBA", (8, 8)), "alpha"), (Image.new("LA", (8, 8)), "alpha"), (Image.new("PA", (8, 8)), "alpha"),
    (np.zeros((8, 8, 4), np.uint8), "alpha"), (Image.new("CMYK", (8, 8)), "ICC"), (Image.new("I", (8, 8)), "32-bit"),
    (Image.new("HSV", (8, 8)), "HSV"), (np.zeros((8, 8, 2), np.uint8), "shape"), (np.zeros((0, 8), np.uint8), "empty"),
    (np.zeros((8, 8), np.int32), "dtype"), (np.zeros((2, 8, 8, 3), np.uint8), "shape"),
])
def test_refused_inputs_name_the_problem(image, match):
    with pytest.raises((ValueError, TypeError), match=match):
        to_array(image)


def test_palette_with_transparency_is_alpha():
    image = Image.new("P", (8, 8))
    image.info["transparency"] = 0
    with pytest.raises(ValueError, match="alpha"):
        to_array(image)
    assert to_array(flatten_alpha(image)).shape == (8, 8, 3)


def test_flatten_alpha(rgb):
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    rgba[:10, :, 3] = 0  # transparent rows
    rgba[10:20, :, 3] = 128
    flat = flatten_alpha(rgba)
    np.testing.assert_array_equal(flat[:10], 255)
    np.testing.assert_array_equal(flat[20:], rgb[20:])
    np.testing.assert_array_equal(flat[10:20], np.rint(rgb[10:20] * (128 / 255) + 255 * (127 / 255)))
    np.testing.assert_array_equal(np.asarray(flatten_alpha(Image.fromarray(rgba))), flat)  # PIL == numpy (+-0)
    red_under = flatten_alpha(rgba, background=(255, 0, 0))
    np.testing.assert_array_equal(red_under[:10], np.broadcast_to([255, 0, 0], (10, 128, 3)))
    bgra = np.ascontiguousarray(rgba[:, :, [2, 1, 0, 3]])
    np.testing.assert_array_equal(flatten_alpha(bgra, (255, 0, 0), color_order="BGR"), red_under[:, :, ::-1])
    floats = flatten_alpha(rgba.astype(np.float32) / 255)
    assert floats.dtype == np.float32
    np.testing.assert_allclose(floats * 255, flat, atol=0.5 + 1e-4)
    assert flatten_alpha(rgb) is rgb


def test_read_only_input_is_accepted_and_never_written(rgb):
    frozen = np.frombuffer(rgb.tobytes(), np.uint8).reshape(rgb.shape)
    assert not frozen.flags.writeable
    np.testing.assert_array_equal(to_array(frozen), rgb)
    saliency = np.ones(rgb.shape[:2], np.float32)
    assert semantic_jpeg.encode(frozen, saliency=saliency) == semantic_jpeg.encode(rgb, saliency=saliency)
    np.testing.assert_array_equal(df.pixel_deflection(frozen, 100, 3, rng=0), df.pixel_deflection(rgb, 100, 3, rng=0))


# ---------------------------------------------------------------- codec, models and filters follow it


def test_codec_models_and_filters_share_the_colour_order(rgb):
    """cv2-style BGR arrays need color_order="BGR" in every API, and give what the RGB array gives."""
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    saliency = np.linspace(0, 1, rgb.shape[0] * rgb.shape[1], dtype=np.float32).reshape(rgb.shape[:2])
    assert semantic_jpeg.encode(bgr, saliency=saliency, color_order="BGR") == semantic_jpeg.encode(rgb,
                                                                                                   saliency=saliency)
    assert semantic_jpeg.encode(bgr, saliency=saliency) != semantic_jpeg.encode(rgb, saliency=saliency)
    np.testing.assert_array_equal(df.jpeg(bgr, 60, color_order="BGR"), df.jpeg(rgb, 60)[:, :, ::-1])
    pytest.importorskip("onnxruntime")
    from semantic_jpeg.onnx_models import default_model

    model = default_model()
    np.testing.assert_allclose(model.rcam_map(bgr, color_order="BGR"), model.rcam_map(rgb), atol=1e-5)


@pytest.mark.parametrize("make, expect_error", [
    (lambda rgb: Image.fromarray(rgb).convert("RGBA"), "alpha"),
    (lambda rgb: np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)]), "alpha"),
    (lambda rgb: Image.fromarray(rgb).convert("CMYK"), "CMYK"),
])
def test_codec_and_models_refuse_alike(rgb, make, expect_error):
    image = make(rgb)
    with pytest.raises(ValueError, match=expect_error):
        semantic_jpeg.encode(image, saliency=np.ones(rgb.shape[:2], np.float32))
    pytest.importorskip("onnxruntime")
    from semantic_jpeg.onnx_models import default_model

    with pytest.raises(ValueError, match=expect_error):
        default_model().msroi_map(image)


def test_codec_and_models_read_16_bit_alike(rgb):
    grey = np.asarray(Image.fromarray(rgb).convert("L"))
    sixteen = Image.fromarray(grey.astype(np.uint16) * 257)
    saliency = np.ones(grey.shape, np.float32)
    assert semantic_jpeg.encode(sixteen, saliency=saliency) == semantic_jpeg.encode(grey, saliency=saliency)
    pytest.importorskip("onnxruntime")
    from semantic_jpeg.onnx_models import default_model

    np.testing.assert_array_equal(default_model().msroi_map(sixteen), default_model().msroi_map(grey))


def test_filters_take_the_same_float_range_and_order_checks(rgb):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        df.wavelet_denoise(np.full((16, 16, 3), 1.5, np.float32))
    with pytest.raises(ValueError, match="color_order must be 'RGB'"):
        df.jpeg(rgb, color_order="RBG")


def test_jpeg_bytes_decode(rgb):
    data_ = semantic_jpeg.encode(rgb, saliency=np.ones(rgb.shape[:2], np.float32))
    assert Image.open(io.BytesIO(data_)).size == (128, 128)
