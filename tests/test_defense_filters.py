"""Tests of semantic_jpeg.defense_filters against numpy oracles and library references."""
import io

import numpy as np
import pytest
from PIL import Image
from skimage import data
from skimage.restoration import denoise_wavelet

from semantic_jpeg import defense_filters as df

MASK = (1 << 64) - 1


class Xoshiro256:
    """Pure-Python xoshiro256** seeded by splitmix64: the oracle for the C kernel's draws."""

    def __init__(self, seed):
        self.state = []
        for _ in range(4):
            seed = (seed + 0x9E3779B97F4A7C15) & MASK
            z = seed
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
            self.state.append(z ^ (z >> 31))

    @staticmethod
    def rotl(x, k):
        return ((x << k) | (x >> (64 - k))) & MASK

    def next(self):
        s = self.state
        result = (self.rotl((s[1] * 5) & MASK, 7) * 9) & MASK
        t = (s[1] << 17) & MASK
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = self.rotl(s[3], 45)
        return result

    def below(self, n):
        return ((self.next() >> 32) * n) >> 32

    def unit(self):
        return (self.next() >> 40) / 2**24


def deflection_oracle(image, deflections, window, seed, saliency=None, per_channel=False):
    """Algorithm 2 / sec 4.8 in numpy, replaying the documented draw order; also returns the moves."""
    out = image.copy()
    height, width = image.shape[:2]
    channels = image.shape[2] if image.ndim == 3 else 1
    prng = Xoshiro256(seed)
    moves = []
    for _ in range(deflections):
        for c in range(channels if per_channel else 1):
            y, x = prng.below(height), prng.below(width)
            if saliency is not None and prng.unit() < saliency[y, x]:
                continue
            y0, y1 = max(0, y - window), min(height - 1, y + window)
            x0, x1 = max(0, x - window), min(width - 1, x + window)
            ny, nx = y0 + prng.below(y1 - y0 + 1), x0 + prng.below(x1 - x0 + 1)
            if per_channel:
                out[y, x, c] = image[ny, nx, c]
            else:
                out[y, x] = image[ny, nx]
            moves.append((y, x, ny, nx))
    return out, moves


def seed_of(rng_seed):
    return int(np.random.default_rng(rng_seed).integers(2**64, dtype=np.uint64))


@pytest.fixture(scope="module")
def astronaut():
    return np.ascontiguousarray(data.astronaut()[40:200, 100:290])  # RGB uint8, 160x190


# ---------------------------------------------------------------- pixel deflection


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_deflection_matches_oracle(astronaut, per_channel, dtype):
    image = astronaut if dtype == np.uint8 else astronaut.astype(np.float32) / 255
    out = df.pixel_deflection(image, 300, 5, per_channel=per_channel, rng=7)
    expected, moves = deflection_oracle(image, 300, 5, seed_of(7), per_channel=per_channel)
    np.testing.assert_array_equal(out, expected)
    assert len(moves) == 300 * (3 if per_channel else 1)
    assert all(abs(y - ny) <= 5 and abs(x - nx) <= 5 for y, x, ny, nx in moves)
    changed = np.argwhere((out != image).any(axis=-1))
    targets = {(y, x) for y, x, _, _ in moves}
    assert {tuple(p) for p in changed} <= targets  # only drawn pixels change
    assert len(changed) > 0.5 * len(targets)  # and most draws do change their pixel


def test_targeted_deflection_matches_oracle_and_spares_salient_pixels():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    saliency = np.zeros((64, 80), np.float32)
    saliency[:, :40] = 1.0  # left half fully salient: never deflected
    saliency[:, 40:60] = 0.5
    out = df.pixel_deflection(image, 4000, 3, saliency=saliency, rng=3)
    expected, moves = deflection_oracle(image, 4000, 3, seed_of(3), saliency=saliency)
    np.testing.assert_array_equal(out, expected)
    xs = np.array([x for _, x, _, _ in moves])
    assert (xs >= 40).all()
    half, none = ((xs >= 40) & (xs < 60)).sum(), (xs >= 60).sum()
    assert 0.35 < half / none < 0.65  # deflected with probability 1 - 0.5 vs 1 - 0


def test_deflection_window_clipped_at_borders_and_batch():
    image = np.arange(2 * 30 * 40, dtype=np.float32).reshape(2, 30, 40, 1) / (2 * 30 * 40)
    out = df.pixel_deflection(image, 2000, 2, rng=11)
    rng = np.random.default_rng(11)
    for single, got in zip(image, out):
        expected, moves = deflection_oracle(single, 2000, 2, int(rng.integers(2**64, dtype=np.uint64)))
        np.testing.assert_array_equal(got, expected)
        ys, xs = np.array([m[2] for m in moves]), np.array([m[3] for m in moves])
        assert ys.min() == 0 and ys.max() == 29 and xs.min() == 0 and xs.max() == 39


def test_deflection_determinism_and_grayscale(astronaut):
    gray = np.ascontiguousarray(astronaut[..., 1])
    a = df.pixel_deflection(gray, 500, 4, rng=1)
    assert a.shape == gray.shape and a.dtype == np.uint8
    np.testing.assert_array_equal(a, df.pixel_deflection(gray, 500, 4, rng=np.random.default_rng(1)))
    assert (a != df.pixel_deflection(gray, 500, 4, rng=2)).any()
    np.testing.assert_array_equal(df.pixel_deflection(gray, 0, 4, rng=1), gray)


def test_numpy_scalar_settings_equal_python_ones(astronaut):
    """Settings checks take numpy integers and floats like Python ones (and refuse strings and inf)."""
    np.testing.assert_array_equal(df.pixel_deflection(astronaut, np.int64(300), np.int32(3), rng=5),
                                  df.pixel_deflection(astronaut, 300, 3, rng=5))
    np.testing.assert_array_equal(df.wavelet_denoise(astronaut, np.float32(0.05), levels=np.uint8(2)),
                                  df.wavelet_denoise(astronaut, float(np.float32(0.05)), levels=2))
    for bad in ("0.04", np.float64(np.inf)):
        with pytest.raises(ValueError, match="sigma must be a finite number >= 0"):
            df.wavelet_denoise(astronaut, bad)
    with pytest.raises(ValueError, match="draws must be an integer >= 1"):
        df.majority_vote(lambda batch: np.zeros(len(batch), int), astronaut, df.preset("dwt"), draws=np.int8(0))


@pytest.mark.parametrize("kwargs, error", [
    (dict(deflections=-1), ValueError), (dict(deflections=2.5), ValueError), (dict(window=0), ValueError),
    (dict(window=50), ValueError), (dict(saliency=np.ones((5, 5), np.float32)), ValueError),
    (dict(saliency=np.full((64, 64), np.nan, np.float32)), ValueError),
    (dict(saliency=np.full((64, 64), 2.0, np.float32)), ValueError), (dict(saliency="gradcam"), ValueError),
    (dict(rng="seed"), TypeError), (dict(color_order="RGBA"), ValueError),
])
def test_deflection_bad_arguments(kwargs, error):
    with pytest.raises(error):
        df.pixel_deflection(np.zeros((64, 64, 3), np.uint8), **{"deflections": 10, "window": 10, **kwargs})


@pytest.mark.parametrize("value, message", [(np.nan, "NaN"), (np.inf, "NaN"), (-np.inf, "NaN"), (-1e-6, r"\[0, 1\]"),
                                            (np.nextafter(np.float32(1), np.float32(2)), r"\[0, 1\]")])
@pytest.mark.parametrize("at", [0, 37 * 64 + 5, 64 * 64 - 1])  # first, middle (off a vector boundary), last
def test_one_bad_saliency_value_is_found(value, message, at):
    saliency = np.full(64 * 64, 0.5, np.float32)
    saliency[at] = value
    with pytest.raises(ValueError, match=message):
        df.pixel_deflection(np.zeros((64, 64, 3), np.uint8), 10, 2, saliency=saliency.reshape(64, 64))
    saliency[at] = 1.0  # the closed interval's ends are valid
    df.pixel_deflection(np.zeros((64, 64, 3), np.uint8), 10, 2, saliency=saliency.reshape(64, 64))


# ---------------------------------------------------------------- wavelet denoising


@pytest.mark.parametrize("wavelet", ["db1", "db2", "sym4"])
@pytest.mark.parametrize("method", ["BayesShrink", "VisuShrink"])
@pytest.mark.parametrize("sigma", [0.04, 0.1, None])
def test_wavelet_equals_scikit_image(astronaut, wavelet, method, sigma):
    image = astronaut[:151, :173].astype(np.float32) / 255  # odd sizes exercise the boundary handling
    expected = np.clip(denoise_wavelet(image.astype(np.float64), sigma=sigma, wavelet=wavelet, method=method,
                                       mode="soft", convert2ycbcr=True, channel_axis=-1), 0, 1)
    out = df.wavelet_denoise(np.ascontiguousarray(image[..., ::-1]), sigma, wavelet=wavelet, method=method,
                             color_order="BGR")
    np.testing.assert_allclose(out[..., ::-1], expected, atol=1e-3 if sigma is None else 2e-6)
    assert np.abs(out[..., ::-1] - image).mean() > 1e-3  # it did denoise


def test_wavelet_hard_levels_gray_and_uint8(astronaut):
    image = astronaut.astype(np.float32) / 255
    expected = np.clip(denoise_wavelet(image.astype(np.float64), sigma=0.05, mode="hard", wavelet_levels=2,
                                       method="BayesShrink", convert2ycbcr=True, channel_axis=-1), 0, 1)
    out = df.wavelet_denoise(image, 0.05, mode="hard", levels=2, color_order="RGB")
    assert np.mean(np.abs(out - expected) > 1e-4) < 1e-3  # hard thresholding: only ties at the threshold differ
    gray = image[..., 0].copy()
    np.testing.assert_allclose(df.wavelet_denoise(gray, 0.04),
                               np.clip(denoise_wavelet(gray.astype(np.float64), sigma=0.04), 0, 1), atol=2e-6)
    out8 = df.wavelet_denoise(astronaut, 0.04, color_order="RGB")
    reference8 = np.rint(np.clip(denoise_wavelet(image.astype(np.float64), sigma=0.04, method="BayesShrink",
                                                 convert2ycbcr=True, channel_axis=-1), 0, 1) * 255)
    assert out8.dtype == np.uint8 and np.abs(out8 - reference8).max() <= 1


def test_wavelet_channel_range_sigma_matches_per_channel_scikit_image(astronaut):
    """sigma_mode="channel-range": each YCbCr channel normalised to [0, 1] and denoised with sigma itself."""
    from skimage.color import rgb2ycbcr, ycbcr2rgb

    image = astronaut.astype(np.float64) / 255
    ycc = rgb2ycbcr(image)
    for i in range(3):
        low, high = ycc[..., i].min(), ycc[..., i].max()
        ycc[..., i] = denoise_wavelet((ycc[..., i] - low) / (high - low), sigma=0.04, method="BayesShrink",
                                      wavelet_levels=None) * (high - low) + low
    expected = np.clip(ycbcr2rgb(ycc), 0, 1)
    out = df.wavelet_denoise(astronaut.astype(np.float32) / 255, 0.04, sigma_mode="channel-range",
                             color_order="RGB")
    np.testing.assert_allclose(out, expected, atol=2e-6)


def test_sure_threshold_minimises_sure_risk():
    rng = np.random.default_rng(0)
    dense = rng.normal(0, 1, (1, 40, 50)) + rng.choice([0, 4], (1, 40, 50))  # dense signal: SURE branch
    flat = dense.ravel()
    n = flat.size

    def risk(t):
        return n - 2 * np.sum(np.abs(flat) <= t) + np.sum(np.minimum(flat**2, t**2))

    t = df.wavelet.sure_threshold(dense, np.array([1.0]))[0]
    grid = np.linspace(0, np.sqrt(2 * np.log(n)), 400)
    assert risk(t) <= min(risk(g) for g in grid) + 1e-9
    sparse = rng.normal(0, 1, (1, 40, 50))  # pure noise: universal threshold sigma sqrt(2 log n)
    np.testing.assert_allclose(df.wavelet.sure_threshold(sparse, np.array([2.0])), 2 * np.sqrt(2 * np.log(n)))
    out = df.wavelet_denoise(np.full((32, 32, 3), 0.5, np.float32) + 0, 0.04, method="SureShrink")
    np.testing.assert_allclose(out, 0.5, atol=1e-6)


@pytest.mark.parametrize("kwargs", [dict(method="Bayes"), dict(mode="garrote"), dict(wavelet="db99"),
                                    dict(sigma=-1.0), dict(sigma=float("nan")), dict(levels=0),
                                    dict(sigma_mode="ycbcr")])
def test_wavelet_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        df.wavelet_denoise(np.zeros((32, 32, 3), np.uint8), **kwargs)


def test_wavelet_workspace_kept_per_thread(astronaut, monkeypatch):
    """The native denoiser's scratch memory is reused within a thread, separate between threads (results of
    concurrent calls equal serial ones) and not kept beyond WORKSPACE_KEPT_BYTES."""
    from concurrent.futures import ThreadPoolExecutor

    from semantic_jpeg import native

    first, second = native.workspace(1000, np.float32), native.workspace(10, np.float64)
    assert np.shares_memory(first, second) and second.dtype == np.float64 and second.shape == (10,)
    with ThreadPoolExecutor(1) as pool:
        assert not np.shares_memory(first, pool.submit(native.workspace, 1000, np.float32).result())
    images = [np.ascontiguousarray(np.roll(astronaut, 7 * k, axis=1)) for k in range(6)]
    serial = [df.wavelet_denoise(image) for image in images]
    with ThreadPoolExecutor(3) as pool:
        for _ in range(3):
            for got, expected in zip(pool.map(df.wavelet_denoise, images), serial):
                np.testing.assert_array_equal(got, expected)
    monkeypatch.setattr(native, "WORKSPACE_KEPT_BYTES", 1 << 10)
    kept = native.workspace(1, np.uint8)
    size = kept.base.nbytes + 1  # more than this thread keeps, and above the (lowered) limit
    big = native.workspace(size, np.uint8)
    assert big.nbytes == size and not np.shares_memory(big, native.workspace(size, np.uint8))
    assert np.shares_memory(kept, native.workspace(1, np.uint8))  # the kept buffer stayed


def test_native_haar_denoiser_refuses_bad_arguments():
    from semantic_jpeg.native import as_output_pointer, as_pointer, ffi, lib

    assert lib.filters_haar_denoise_workspace(0, 8, 3, 1) == -1
    assert lib.filters_haar_denoise_workspace(8, 8, 5, 1) == -1
    assert lib.filters_haar_denoise_workspace(8, 8, 3, 0) == -1
    assert lib.filters_haar_denoise_workspace(8, 8, 3, 1) == 4 * 3 * 4 * 4
    image, out = np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.uint8)
    variance = np.full(3, 0.0016)
    scratch = np.empty(lib.filters_haar_denoise_workspace(8, 8, 3, 1), np.float32)
    good = dict(src=as_pointer(image, np.uint8), src_is_float=0, height=8, width=8, channels=3, to_planes=ffi.NULL,
                scale=1 / 255, to_pixels=ffi.NULL, levels=1, variance=as_pointer(variance, np.float64), method=0,
                visu_factor=1.0, hard=0, dst=as_output_pointer(out, np.uint8), dst_is_float=0,
                workspace=as_output_pointer(scratch, np.float32))
    assert lib.filters_haar_denoise(ffi.NULL) == -1
    for bad in (dict(workspace=ffi.NULL), dict(method=2), dict(levels=0), dict(channels=5), dict(src=ffi.NULL),
                dict(dst=ffi.NULL), dict(variance=ffi.NULL)):
        assert lib.filters_haar_denoise(ffi.new("filters_haar_denoise_args *", {**good, **bad})) == -1, bad
    assert lib.filters_haar_denoise(ffi.new("filters_haar_denoise_args *", good)) == 0


def test_native_pixel_deflection_refuses_bad_arguments():
    from semantic_jpeg.native import as_output_pointer, as_pointer, ffi, lib

    image, out = np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.uint8)
    good = dict(src=as_pointer(image, np.uint8), dst=as_output_pointer(out, np.uint8), height=8, width=8, channels=3,
                elem_bytes=1, window=1, saliency=ffi.NULL, per_channel=0)
    state = ffi.new("uint64_t[4]")
    lib.filters_deflection_seed(1, state)
    for bad in (dict(src=ffi.NULL), dict(dst=ffi.NULL), dict(height=0), dict(channels=5), dict(elem_bytes=0)):
        assert lib.filters_pixel_deflection(ffi.new("filters_deflection_args *", {**good, **bad}), 10, state) == -1
    assert lib.filters_pixel_deflection(ffi.new("filters_deflection_args *", good), -1, state) == -1
    assert lib.filters_pixel_deflection(ffi.NULL, 10, state) == -1
    assert lib.filters_pixel_deflection(ffi.new("filters_deflection_args *", good), 10, state) == 10


# ---------------------------------------------------------------- lossy channels


def test_jpeg_equals_pillow_round_trip(astronaut):
    buffer = io.BytesIO()
    Image.fromarray(astronaut).save(buffer, format="JPEG", quality=40)
    expected = np.asarray(Image.open(buffer))
    np.testing.assert_array_equal(df.jpeg(astronaut[..., ::-1], 40, color_order="BGR")[..., ::-1], expected)
    np.testing.assert_array_equal(df.jpeg(astronaut, 40), expected)  # RGB by default, as the whole package
    with pytest.raises(ValueError):
        df.jpeg(astronaut, 0)


def test_color_depth_oracle(astronaut):
    image = astronaut.astype(np.float32) / 255
    expected = np.round(image * 7) / 7
    np.testing.assert_allclose(df.color_depth(image, 3), expected, atol=1e-7)
    assert len(np.unique(df.color_depth(astronaut, 3))) == 8
    np.testing.assert_array_equal(df.color_depth(astronaut, 8), astronaut)


def test_fft_lowpass_oracle(astronaut):
    image = astronaut.astype(np.float32) / 255
    np.testing.assert_allclose(df.fft_lowpass(image, 0.0), image, atol=1e-5)
    out = df.fft_lowpass(image, 0.75)
    fy, fx = np.meshgrid(np.fft.fftfreq(image.shape[0]), np.fft.fftfreq(image.shape[1]), indexing="ij")
    keep = (np.abs(fy) <= 0.25) & (np.abs(fx) <= 0.25)
    expected = np.real(np.fft.ifft2(np.fft.fft2(image, axes=(0, 1)) * keep[..., None], axes=(0, 1)))
    np.testing.assert_allclose(out, np.clip(expected, 0, 1), atol=1e-5)
    assert 0.2 < keep.mean() < 0.3


def test_svd_truncation_is_eckart_young(astronaut):
    image = astronaut.astype(np.float32) / 255
    out = df.svd_truncate(image, 10)
    for c in range(3):
        u, s, vt = np.linalg.svd(image[..., c].astype(np.float64))
        best = (u[:, :10] * s[:10]) @ vt[:10]
        np.testing.assert_allclose(out[..., c], np.clip(best, 0, 1), atol=1e-5)
        np.testing.assert_allclose(np.linalg.norm(best - image[..., c]), np.sqrt(np.sum(s[10:] ** 2)))


def test_additive_noise_oracles(astronaut):
    image = astronaut.astype(np.float32) / 255
    g = np.random.default_rng(5)
    np.testing.assert_allclose(df.gaussian_noise(image, 0.1, rng=5),
                               np.clip(image + np.float32(0.1) * g.standard_normal(image.shape, np.float32), 0, 1))
    u = np.random.default_rng(5).random(image.shape, dtype=np.float32)
    np.testing.assert_allclose(df.uniform_noise(image, 0.1, rng=5), np.clip(image + 0.1 * (2 * u - 1), 0, 1),
                               atol=1e-6)
    lap = np.random.default_rng(5).laplace(0, 0.05, image.shape)
    np.testing.assert_allclose(df.laplace_noise(image, 0.05, rng=5), np.clip(image + lap, 0, 1), atol=1e-6)
    noise = df.gaussian_noise(np.full((200, 200), 0.5, np.float32), 0.05, rng=1) - 0.5
    assert abs(noise.std() - 0.05) < 0.002


def test_median_and_non_local_means_equal_opencv(astronaut):
    cv2 = pytest.importorskip("cv2")
    bgr = np.ascontiguousarray(astronaut[..., ::-1])
    np.testing.assert_array_equal(df.median_smoothing(bgr, 5), cv2.medianBlur(bgr, 5))
    np.testing.assert_array_equal(df.non_local_means(bgr, 7.0, color_order="BGR"),
                                  cv2.fastNlMeansDenoisingColored(bgr, None, 7.0, 7.0, 7, 21))
    np.testing.assert_array_equal(df.non_local_means(astronaut, 7.0),
                                  cv2.fastNlMeansDenoisingColored(bgr, None, 7.0, 7.0, 7, 21)[..., ::-1])


def test_non_local_means_checks_its_windows_before_opencv(astronaut):
    """OpenCV takes any int and dies of SIGFPE on a search window <= -2: checked in Python first."""
    pytest.importorskip("cv2")
    small = astronaut[:32, :32]
    for bad, match in [({"search_size": -5}, "search_size"), ({"search_size": 0}, "search_size"),
                       ({"template_size": 4}, "odd"), ({"template_size": 2.5}, "template_size"),
                       ({"template_size": True}, "template_size")]:
        with pytest.raises(ValueError, match=match):
            df.non_local_means(small, **bad)
    assert df.non_local_means(small, template_size=3, search_size=5).shape == small.shape


def test_deterministic_filters_still_check_rng_and_counts_refuse_bools(astronaut):
    small = astronaut[:32, :32]
    for filt in (df.jpeg, df.wavelet_denoise, df.fft_lowpass, df.median_smoothing):
        with pytest.raises(TypeError, match="rng"):
            filt(small, rng="abc")
    with pytest.raises(ValueError, match="rng seed"):
        df.jpeg(small, rng=-1)
    with pytest.raises(ValueError, match="quality"):
        df.jpeg(small, quality=True)
    with pytest.raises(ValueError, match="deflections"):
        df.pixel_deflection(small, deflections=True, rng=0)


def test_random_resize_pad_fill_is_in_unit_range(astronaut):
    out = df.random_resize_pad(np.zeros((48, 64, 3), np.uint8), 0.5, fill=0.5, rng=0)
    assert out.max() == 128  # 0.5 of the uint8 range
    with pytest.raises(ValueError, match="fill"):
        df.random_resize_pad(astronaut, 0.5, fill=128, rng=0)


def test_random_resize_pad_places_shrunk_image_on_canvas(astronaut):
    image = astronaut.astype(np.float32) / 255
    out = df.random_resize_pad(image, 0.8, fill=0.0, rng=4)
    rows, cols = np.nonzero(out.any(axis=-1))
    height, width = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
    assert 0.8 * 160 - 1 <= height <= 160 and abs(width / 190 - height / 160) < 0.02
    assert out[rows.min():rows.max() + 1, cols.min():cols.max() + 1].mean() == pytest.approx(image.mean(), abs=0.01)
    np.testing.assert_array_equal(out, df.random_resize_pad(image, 0.8, rng=4))


def test_semantic_jpeg_channel_round_trip(astronaut):
    pytest.importorskip("semantic_jpeg.codec")
    from semantic_jpeg import encode

    saliency = np.zeros(astronaut.shape[:2], np.float32)
    saliency[40:120, 60:140] = 1.0
    out = df.semantic_jpeg(astronaut, saliency, color_order="RGB")
    expected = np.asarray(Image.open(io.BytesIO(encode(astronaut, saliency=saliency, color_order="RGB", mode="dct"))))
    np.testing.assert_array_equal(out, expected)


# ---------------------------------------------------------------- conventions, for every filter

FILTERS = [
    lambda im, **kw: df.pixel_deflection(im, 50, 3, **kw),
    lambda im, **kw: df.pixel_deflection(im, 50, 3, saliency=np.full(im.shape[-3:-1] if im.ndim == 4 or (
        im.ndim == 3 and im.shape[-1] <= 4) else im.shape, 0.3, np.float32), **kw),
    lambda im, **kw: df.wavelet_denoise(im, 0.04, **kw),
    lambda im, **kw: df.jpeg(im, 50, **kw),
    lambda im, **kw: df.fft_lowpass(im, 0.5, **kw),
    lambda im, **kw: df.color_depth(im, 4, **kw),
    lambda im, **kw: df.svd_truncate(im, 8, **kw),
    lambda im, **kw: df.gaussian_noise(im, 0.05, **kw),
    lambda im, **kw: df.uniform_noise(im, 0.05, **kw),
    lambda im, **kw: df.laplace_noise(im, 0.05, **kw),
    lambda im, **kw: df.median_smoothing(im, 3, **kw),
    lambda im, **kw: df.random_resize_pad(im, 0.9, **kw),
    lambda im, **kw: df.preset("pd+dwt")(im, **kw),
]
SHAPES = [(48, 40), (48, 40, 1), (48, 40, 3), (2, 48, 40, 3)]


@pytest.mark.parametrize("index", range(len(FILTERS)))
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_conventions(index, shape, dtype):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, shape).astype(np.uint8)
    image = image if dtype == np.uint8 else image.astype(np.float32) / 255
    before = image.copy()
    filt = FILTERS[index]
    out = filt(image, rng=1)
    np.testing.assert_array_equal(image, before)  # input untouched
    assert out.shape == image.shape and out.dtype == image.dtype and out.flags.c_contiguous
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= (255 if dtype == np.uint8 else 1)
    np.testing.assert_array_equal(out, filt(image, rng=1))  # seeded: reproducible
    dst = np.empty_like(image)
    assert filt(image, rng=1, dst=dst) is dst
    np.testing.assert_array_equal(dst, out)


@pytest.mark.parametrize("bad, error", [
    ([[0.5]], TypeError), (np.zeros((8, 8), np.float64), TypeError), (np.zeros((8, 8), np.int32), TypeError),
    (np.zeros((0, 8, 3), np.uint8), ValueError), (np.zeros((1, 1, 3), np.uint8), ValueError),
    (np.full((8, 8), np.nan, np.float32), ValueError), (np.full((8, 8), 1.5, np.float32), ValueError),
    (np.zeros((8, 8, 3, 2, 1), np.uint8), ValueError), (np.zeros((8, 8, 7), np.uint8), ValueError),
])
@pytest.mark.parametrize("filt", [lambda im: df.pixel_deflection(im, 5, 1), df.wavelet_denoise, df.jpeg,
                                  df.gaussian_noise, df.median_smoothing])
def test_bad_images_raise(bad, error, filt):
    with pytest.raises(error):
        filt(bad)


def test_bad_dst_raises():
    image = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(ValueError):
        df.wavelet_denoise(image, dst=np.zeros((16, 16, 3), np.float32))
    with pytest.raises(ValueError):
        df.pixel_deflection(image, 5, 2, dst=np.zeros((16, 15, 3), np.uint8))


# ---------------------------------------------------------------- presets, composition, ensembles


def test_presets_and_compose(astronaut):
    with pytest.raises(ValueError, match="unknown preset"):
        df.preset("pd+magic")
    saliency = np.zeros(astronaut.shape[:2], np.float32)
    saliency[:, :95] = 1.0
    out = df.preset("pd+rcam+dwt")(astronaut, rng=3, saliency=saliency, color_order="RGB")
    manual = df.Compose(df.Filter(df.pixel_deflection, deflections=100, window=10),
                        df.Filter(df.wavelet_denoise, sigma=0.04))
    np.testing.assert_array_equal(out, manual(astronaut, rng=3, saliency=saliency, color_order="RGB"))
    generator = np.random.default_rng(3)
    step = df.pixel_deflection(astronaut, 100, 10, saliency=saliency, rng=generator)
    np.testing.assert_array_equal(out, df.wavelet_denoise(step, 0.04, color_order="RGB"))
    deflected = df.preset("pd+rcam")(astronaut, rng=3, saliency=saliency)
    assert (deflected[:, :95] == astronaut[:, :95]).all() and (deflected[:, 95:] != astronaut[:, 95:]).any()
    with pytest.raises(TypeError):
        df.Filter(df.jpeg, qualty=50)


def test_majority_vote():
    image = np.zeros((32, 32, 3), np.uint8)

    def noisy(im, rng=None):
        return df.gaussian_noise(im, 0.2, rng=rng)

    def classify(batch):  # label 1 when the mean is above a level that half of the draws pass
        return (batch.reshape(len(batch), -1).mean(axis=1) > 0.0805 * 255).astype(int)

    label, votes = df.majority_vote(classify, image, noisy, draws=9, rng=0, return_votes=True)
    assert votes.shape == (9,) and 0 < votes.sum() < 9
    assert label == int(votes.sum() > 4)
    scores = lambda batch: np.eye(3)[np.full(len(batch), 2)]  # noqa: E731
    labels = df.majority_vote(scores, np.stack([image, image]), noisy, draws=4, rng=0)
    np.testing.assert_array_equal(labels, [2, 2])
    with pytest.raises(ValueError):
        df.majority_vote(lambda batch: np.zeros(3, int), image, noisy, draws=4)
    with pytest.raises(ValueError):
        df.majority_vote(classify, image, noisy, draws=0)


def test_import_does_not_load_torch_or_onnxruntime():
    import subprocess
    import sys

    code = ("import sys, semantic_jpeg.defense_filters, semantic_jpeg.defense_filters.adapters; "
            "assert not {'torch', 'onnxruntime', 'albumentations', 'art'} & set(sys.modules), sys.modules.keys()")
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------- read-only buffers, parameter ranges, numerics


def _read_only_buffers(like: np.ndarray, tmp_path):
    """Three read-only arrays shaped like ``like``: a view of immutable bytes, writeable=False, a read-only mmap."""
    from_bytes = np.frombuffer(bytes(like.nbytes), like.dtype).reshape(like.shape)
    flagged = np.zeros_like(like)
    flagged.flags.writeable = False
    path = tmp_path / "dst.bin"
    path.write_bytes(bytes(like.nbytes))
    mapped = np.memmap(path, like.dtype, mode="r", shape=like.shape)
    return {"bytes": from_bytes, "writeable=False": flagged, "mmap": mapped}


READ_ONLY_CASES = {
    "pd": lambda im, **kw: df.pixel_deflection(im, 50, 3, rng=0, **kw),
    "pd+saliency": lambda im, **kw: df.pixel_deflection(im, 50, 3, saliency=np.full(im.shape[-3:-1], 0.3, np.float32),
                                                        rng=0, **kw),
    "dwt": lambda im, **kw: df.wavelet_denoise(im, 0.04, **kw),  # the one-call native path
    "dwt-sure": lambda im, **kw: df.wavelet_denoise(im, 0.04, method="SureShrink", **kw),  # the step-by-step path
    "dwt-db2": lambda im, **kw: df.wavelet_denoise(im, None, wavelet="db2", **kw),
    "preset pd+dwt": lambda im, **kw: df.preset("pd+dwt")(im, rng=0, **kw),
    "preset pd": lambda im, **kw: df.preset("pd")(im, rng=0, **kw),
    "jpeg": lambda im, **kw: df.jpeg(im, 50, **kw),
}


@pytest.mark.parametrize("name", list(READ_ONLY_CASES))
@pytest.mark.parametrize("shape, dtype", [((32, 40, 3), np.uint8), ((32, 40, 3), np.float32),
                                          ((2, 32, 40, 3), np.uint8), ((2, 32, 40, 3), np.float32)])
def test_read_only_dst_is_refused_and_left_unchanged(name, shape, dtype, tmp_path):
    """No filter writes into a read-only dst (immutable bytes, writeable=False, read-only mmap): each raises the
    same ValueError and the buffer keeps its contents (before: pixel deflection and the wavelet denoiser wrote
    into it, and segfaulted on the mmap)."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, shape).astype(np.uint8)
    image = image if dtype == np.uint8 else image.astype(np.float32) / 255
    for kind, dst in _read_only_buffers(image, tmp_path).items():
        with pytest.raises(ValueError, match="dst is read-only"):
            READ_ONLY_CASES[name](image, dst=dst)
        assert not np.asarray(dst).any(), f"{name} wrote into a read-only dst ({kind})"


def test_native_output_pointer_refuses_read_only_arrays():
    from semantic_jpeg.native import as_output_pointer, as_pointer

    frozen = np.frombuffer(bytes(16), np.uint8)
    as_pointer(frozen, np.uint8)  # reading is fine
    with pytest.raises(ValueError, match="writeable"):
        as_output_pointer(frozen, np.uint8)


_FLAT = np.full((48, 64, 3), 0.5, np.float32)  # every detail band is 0
_GRADIENT = np.broadcast_to(np.linspace(0, 1, 64, dtype=np.float32)[None, :, None], (48, 64, 3)).copy()
_ZERO_SIGMA = [dict(sigma=0.0), dict(sigma=None), dict(sigma=0.0, wavelet="db2")]


@pytest.mark.parametrize("image, settings", [(image, settings) for image in (_FLAT, _GRADIENT, (_FLAT * 255).astype(
    np.uint8)) for settings in _ZERO_SIGMA] + [(_FLAT, dict(sigma=0.04, sigma_mode="channel-range"))])
def test_sure_shrink_with_zero_sigma_returns_the_input(image, settings):
    """sigma 0 (given, estimated on a flat or gradient image, or a flat channel's range) means no noise: the
    threshold is 0 and the image comes back (before: NaN thresholds, NaN or black output)."""
    out = df.wavelet_denoise(image, method="SureShrink", **settings)
    assert np.isfinite(out).all()
    if image.dtype == np.uint8:
        np.testing.assert_array_equal(out, image)
    else:
        np.testing.assert_allclose(out, image, atol=2e-6)
    np.testing.assert_array_equal(df.wavelet.sure_threshold(np.ones((2, 4, 4)), np.array([0.0, 1.0]))[0], 0.0)


def test_sure_shrink_zero_sigma_in_one_channel_only():
    rng = np.random.default_rng(1)
    image = rng.random((48, 64, 3), dtype=np.float32)
    image[..., 1] = 0.25  # flat channel: channel-range sigma 0 there, the others are denoised
    out = df.wavelet_denoise(image, 0.1, method="SureShrink", ycbcr=False, sigma_mode="channel-range")
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out[..., 1], 0.25, atol=2e-6)
    assert np.abs(out[..., 0] - image[..., 0]).mean() > 1e-3


@pytest.mark.parametrize("value", [2**31, 2**63, 10**10])
def test_deflections_upper_bound_names_the_parameter(value):
    from semantic_jpeg.defense_filters.deflection import MAX_DEFLECTIONS

    assert MAX_DEFLECTIONS == 2**31 - 1
    with pytest.raises(ValueError, match=r"deflections must be an integer in 0\.\.2147483647"):
        df.pixel_deflection(np.zeros((32, 32, 3), np.uint8), value, 2)


def test_deflection_runs_in_chunks_with_the_same_result(astronaut, monkeypatch):
    """The native loop is split into calls of at most _CHUNK attempts (Ctrl-C is handled between calls), with the
    generator state carried over: the result equals one long run and the oracle."""
    from semantic_jpeg.defense_filters import deflection

    calls = []
    real = deflection.lib

    class CountingLib:
        def __getattr__(self, name):
            return getattr(real, name)

        def filters_pixel_deflection(self, args, attempts, state):
            calls.append(attempts)
            return real.filters_pixel_deflection(args, attempts, state)

    expected, _ = deflection_oracle(astronaut, 1000, 4, seed_of(9))
    monkeypatch.setattr(deflection, "lib", CountingLib())
    monkeypatch.setattr(deflection, "_CHUNK", 64)
    np.testing.assert_array_equal(df.pixel_deflection(astronaut, 1000, 4, rng=9), expected)
    assert max(calls) == 64 and sum(calls) == 1000


@pytest.mark.parametrize("levels", [6, 7, 30, 31, 1000])
def test_wavelet_levels_checked_against_the_image_size(levels):
    """64x48 allows pywt.dwtn_max_level = 5 db1 levels; more are refused with a message naming levels (before:
    7-30 ran silently, larger values failed with unrelated messages)."""
    import pywt

    image = np.zeros((48, 64, 3), np.uint8)
    assert df.wavelet.max_levels((48, 64), "db1") == pywt.dwtn_max_level((48, 64), "db1") == 5
    df.wavelet_denoise(image, levels=5)
    for method in ("BayesShrink", "SureShrink"):
        with pytest.raises(ValueError, match=r"levels must be an integer in 1\.\.5"):
            df.wavelet_denoise(image, levels=levels, method=method)


def test_haar_plan_is_a_named_tuple():
    plan = df.wavelet._haar_plan(48, 64, 3, True, 0.04, None, "BayesShrink", "soft", False)
    assert plan.levels == 2 and plan.method == 0 and plan.hard == 0 and plan.workspace_floats > 0


# ---------------------------------------------------------------- call keywords of presets and Compose


def test_preset_keywords_must_apply(astronaut):
    saliency = np.zeros(astronaut.shape[:2], np.float32)
    with pytest.raises(TypeError, match="saliancy"):
        df.preset("pd+rcam+dwt")(astronaut, rng=0, saliancy=saliency)  # misspelt: must not recompute R-CAM
    with pytest.raises(TypeError, match="sigma"):
        df.preset("pd")(astronaut, rng=0, sigma=0.5)  # pixel deflection has no sigma
    with pytest.raises(TypeError, match="saliency"):
        df.preset("dwt")(astronaut, saliency=saliency)
    with pytest.raises(TypeError, match="qualty"):
        df.preset("jpeg")(astronaut, qualty=20)
    # a keyword one step takes goes to that step only
    deflected = df.pixel_deflection(astronaut, 100, 10, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(df.preset("pd+dwt")(astronaut, rng=0, sigma=0.1), df.wavelet_denoise(deflected, 0.1))
    # apply_filter (used by the adapters and the evaluation) passes what a filter takes and drops the rest
    np.testing.assert_array_equal(df.apply_filter(df.preset("pd"), astronaut, rng=0, sigma=0.5),
                                  df.preset("pd")(astronaut, rng=0))
    with pytest.raises(TypeError, match="saliancy"):
        df.majority_vote(lambda batch: np.zeros(len(batch), int), astronaut, df.preset("pd"), draws=2,
                         saliancy=saliency)


def test_filters_read_rgb_by_default(astronaut):
    """One colour-order rule across the package: RGB unless color_order="BGR"."""
    bgr = np.ascontiguousarray(astronaut[..., ::-1])
    for filt in (lambda im, **kw: df.jpeg(im, 30, **kw), lambda im, **kw: df.wavelet_denoise(im, 0.1, **kw)):
        rgb_out = filt(astronaut)
        np.testing.assert_array_equal(rgb_out, filt(astronaut, color_order="RGB"))
        np.testing.assert_array_equal(filt(bgr, color_order="BGR"), rgb_out[..., ::-1])
        np.testing.assert_array_equal(filt(bgr, color_order="bgr"), rgb_out[..., ::-1])


def test_majority_vote_takes_any_integer_labels_and_refuses_nan_scores(astronaut):
    small = astronaut[:32, :32]
    assert df.majority_vote(lambda batch: np.array([-3, -3, 7])[:len(batch)], small, df.jpeg, draws=3) == -3
    assert df.majority_vote(lambda batch: np.full(len(batch), 10 ** 12), small, df.jpeg, draws=2) == 10 ** 12
    with pytest.raises(ValueError, match="NaN"):
        df.majority_vote(lambda batch: np.full((len(batch), 4), np.nan), small, df.jpeg, draws=2)
