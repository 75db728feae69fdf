"""Semantic JPEG codec: decoders agree, saliency works, size control, Algorithm 1 oracle, options, bad input."""
import io
import os

import cv2
import jpeglib
import numpy as np
import pytest
from PIL import Image
from skimage import data

import semantic_jpeg
from semantic_jpeg.codec import RateControlWarning, encode
from semantic_jpeg.codec import encoder as encoder_module
from semantic_jpeg.codec.quality import level_qualities, quant_tables


@pytest.fixture(scope="module")
def astronaut():
    return np.ascontiguousarray(data.astronaut())  # 512x512 RGB


@pytest.fixture(scope="module")
def box_map(astronaut):
    sal = np.zeros(astronaut.shape[:2], np.float32)
    sal[64:256, 160:352] = 1.0  # the face and helmet
    return sal


def decode_pil(b):
    with Image.open(io.BytesIO(b)) as im:
        return np.asarray(im.convert("RGB") if im.mode != "L" else im).astype(np.float64)


def psnr(a, b):  # inf for identical arrays
    with np.errstate(divide="ignore"):
        return 10 * np.log10(255.0 ** 2 / np.mean((np.asarray(a, float) - np.asarray(b, float)) ** 2))


# ---------------------------------------------------------------- numpy oracles

def oracle_cell_levels(sal, cell, k):
    h, w = sal.shape
    ch, cw = -(-h // cell[0]), -(-w // cell[1])
    out = np.empty((ch, cw), np.uint8)
    for i in range(ch):
        for j in range(cw):
            m = sal[i * cell[0]:(i + 1) * cell[0], j * cell[1]:(j + 1) * cell[1]].astype(np.float64).mean()
            out[i, j] = min(max(int(np.floor(m * k)), 0), k - 1)
    return out


def oracle_algorithm1(rgb, sal, k, qrange, qf, subsampling=2):
    """Algorithm 1 in numpy + Pillow: encode/decode at each level's Q, pick each cell's pixels, re-encode."""
    cell = {0: (8, 8), 1: (8, 16), 2: (16, 16)}[subsampling] if rgb.ndim == 3 else (8, 8)
    levels = oracle_cell_levels(sal, cell, k)
    qs = level_qualities(k, qrange)
    mosaic = np.empty_like(rgb)
    for n in np.unique(levels):
        buf = io.BytesIO()
        t = quant_tables(qs[n])
        Image.fromarray(rgb).save(buf, "JPEG", qtables=[list(map(int, x)) for x in (t if rgb.ndim == 3 else t[:1])],
                                  subsampling=subsampling)
        decoded = np.asarray(Image.open(io.BytesIO(buf.getvalue())))
        mask = np.kron(levels == n, np.ones(cell, bool))[:rgb.shape[0], :rgb.shape[1]]
        mosaic[mask] = decoded[mask]
    buf = io.BytesIO()
    t = quant_tables(qf)
    Image.fromarray(mosaic).save(buf, "JPEG", qtables=[list(map(int, x)) for x in (t if rgb.ndim == 3 else t[:1])],
                                 subsampling=subsampling)
    return buf.getvalue()


def read_coefficients(b, tmp_path):
    p = tmp_path / "c.jpg"
    p.write_bytes(b)
    j = jpeglib.read_dct(str(p))
    j.load()
    comps = [j.Y] + ([j.Cb, j.Cr] if j.has_chrominance else [])
    return [c.reshape(c.shape[0], c.shape[1], 64).astype(np.int64) for c in comps]


# ---------------------------------------------------------------- decoding

@pytest.mark.parametrize("mode", ["rdo", "dct", "mosaic"])
@pytest.mark.parametrize("subsampling", ["4:2:0", "4:4:4", "4:2:2"])
def test_decoders_agree(astronaut, box_map, mode, subsampling, tmp_path):
    b = encode(astronaut, saliency=box_map, mode=mode, subsampling=subsampling)
    ref = decode_pil(b)
    assert ref.shape == astronaut.shape
    cv = cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
    p = tmp_path / "x.jpg"
    p.write_bytes(b)
    for version in ("6b", "9e"):
        jpeglib.version.set(version)
        independent = jpeglib.read_spatial(str(p)).spatial
        assert independent.shape == astronaut.shape
        assert psnr(independent, ref) > 40, version  # IDCT/upsampling variants differ by rounding only
    jpeglib.version.set("6b")
    assert psnr(cv, ref) > 40
    assert psnr(ref, astronaut) > 28
    if subsampling == "4:2:0":  # jpegli's own decoder
        import pyjpegli
        pixels, width, height = pyjpegli.decode(b)
        assert (width, height) == (512, 512)
        assert psnr(np.frombuffer(pixels, np.uint8).reshape(height, width, 3), ref) > 40


def test_salient_region_is_better(astronaut, box_map):
    for mode in ("dct", "mosaic"):
        dec = decode_pil(encode(astronaut, saliency=box_map, mode=mode, match_jpeg_quality=50))
        inside = box_map > 0
        err = (dec - astronaut) ** 2
        in_psnr = 10 * np.log10(255 ** 2 / err[inside].mean())
        out_psnr = 10 * np.log10(255 ** 2 / err[~inside].mean())
        plain = decode_pil(_plain(astronaut, 50))
        plain_in = 10 * np.log10(255 ** 2 / ((plain - astronaut) ** 2)[inside].mean())
        assert in_psnr > out_psnr + 3
        assert in_psnr > plain_in + 0.75, (mode, in_psnr, plain_in)  # equal size, better where it matters


def _plain(rgb, q, **kw):
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=q, **kw)
    return buf.getvalue()


# ---------------------------------------------------------------- oracles

@pytest.mark.parametrize("subsampling", [2, 0])
def test_mosaic_mode_equals_numpy_algorithm1(astronaut, subsampling):
    rgb = astronaut[:200, :300]  # not a multiple of 16
    sal = np.linspace(0, 1, rgb.shape[1], dtype=np.float32)[None, :].repeat(rgb.shape[0], 0)
    ours = encode(rgb, saliency=sal, mode="mosaic", quality=75, subsampling=subsampling)
    assert ours == oracle_algorithm1(rgb, sal, 5, (30, 70), 75, subsampling)


def test_cell_levels_match_numpy(astronaut):
    rng = np.random.default_rng(0)
    sal = rng.random((77, 123)).astype(np.float32)
    r = encode(astronaut[:77, :123], saliency=sal, levels=7, mode="dct", return_result=True)
    assert r.cell_size == (16, 16)
    np.testing.assert_array_equal(r.cell_levels, oracle_cell_levels(sal, (16, 16), 7))
    assert abs(sum(r.level_fractions) - 1) < 1e-9


def oracle_forward_dct(img, samp, to_ycbcr):
    """What a JPEG encoder computes before quantisation, in float64 numpy: edge padding to whole MCUs, JFIF
    YCbCr, box downsampling, the orthonormal 8x8 DCT-II of each block (scipy)."""
    from scipy.fft import dctn
    h, w = img.shape[:2]
    vmax, hmax = max(v for v, _ in samp), max(h_ for _, h_ in samp)
    ph, pw = -(-h // (8 * vmax)) * 8 * vmax, -(-w // (8 * hmax)) * 8 * hmax
    x = np.pad(img.astype(np.float64).reshape(h, w, -1), [(0, ph - h), (0, pw - w), (0, 0)], mode="edge")
    if to_ycbcr:
        m = np.array([[0.299, 0.587, 0.114], [-0.168735892, -0.331264108, 0.5], [0.5, -0.418687589, -0.081312411]])
        x = x @ m.T + np.array([-128.0, 0.0, 0.0])
    else:
        x = x - 128.0
    out = []
    for c, (v, h_) in enumerate(samp):
        fv, fh = vmax // v, hmax // h_
        plane = x[:, :, c].reshape(ph // fv, fv, pw // fh, fh).mean(axis=(1, 3))
        def ceil_div(a, b):
            return -(-a // b)

        bh, bw = ceil_div(ceil_div(h * v, vmax), 8), ceil_div(ceil_div(w * h_, hmax), 8)
        blocks = plane[:bh * 8, :bw * 8].reshape(bh, 8, bw, 8).transpose(0, 2, 1, 3)
        out.append(dctn(blocks, type=2, norm="ortho", axes=(2, 3)).reshape(bh, bw, 64))
    return out


SAMPLING = {0: [(1, 1)] * 3, 1: [(1, 2), (1, 1), (1, 1)], 2: [(2, 2), (1, 1), (1, 1)]}  # (v, h) per component


@pytest.mark.parametrize("shape", [(136, 200), (77, 123), (1, 1), (9, 17)])
@pytest.mark.parametrize("kind", ["4:2:0", "4:2:2", "4:4:4", "gray", "keep_rgb"])
def test_native_forward_dct_equals_numpy(astronaut, shape, kind):
    from semantic_jpeg.codec import encoder
    crop = astronaut[:shape[0], :shape[1]]
    img = np.ascontiguousarray(crop[..., 1] if kind == "gray" else crop)
    options = ({"keep_rgb": True, "subsampling": 0} if kind == "keep_rgb" else {} if kind == "gray"
               else {"subsampling": kind})
    coder = encoder._DctCoder(img, np.zeros(shape, np.float32), 5, encoder._check_options(options, "dct"))
    if kind == "gray":
        samp = [(1, 1)]  # one component: its blocks in raster order, whatever its sampling factors
    else:
        samp = SAMPLING[coder.options["subsampling"]]
        assert [(c.samp_v, c.samp_h) for c in coder.header.components] == samp
    expect = oracle_forward_dct(img, samp, to_ycbcr=kind not in ("gray", "keep_rgb"))
    for ours, ref in zip(coder.raw, expect, strict=True):
        assert ours.dtype == np.float32 and ours.shape == ref.shape
        np.testing.assert_allclose(ours, ref, atol=2e-3)


@pytest.mark.parametrize("deadzone", [0.5, 0.8])
@pytest.mark.parametrize("gray", [False, True])
def test_dct_mode_coefficients_equal_numpy_requantisation(astronaut, tmp_path, gray, deadzone):
    from semantic_jpeg.codec import encoder
    rgb = astronaut[:136, :200]
    if gray:
        rgb = np.ascontiguousarray(rgb[:, :, 1])
    rng = np.random.default_rng(1)
    sal = rng.random(rgb.shape[:2]).astype(np.float32)
    r = encode(rgb, saliency=sal, quality=80, mode="dct", return_result=True)
    coder = encoder._DctCoder(rgb, sal, 5, encoder._check_options({}, "dct"))  # one pass: transform + quantise
    data = coder.encode(level_qualities(5, (30, 70)), 80, deadzone=deadzone)
    assert deadzone != 0.5 or data == r.data
    kept = encoder._DctCoder(rgb, sal, 5, encoder._check_options({}, "dct"), reuse_transform=True)  # rate control
    assert kept.encode(level_qualities(5, (30, 70)), 80, deadzone=deadzone) == data
    # the oracle: each block's DCT (the native front end, checked above) requantised per block in float32 numpy
    raw = coder.raw
    got = read_coefficients(data, tmp_path)
    qs, frame = level_qualities(5, (30, 70)), quant_tables(80)
    samp = [(1, 1)] if gray else [(2, 2), (1, 1), (1, 1)]
    for ci, (raw_c, got_c) in enumerate(zip(raw, got, strict=True)):
        t = min(ci, 1)
        inverse = np.float32(1) / frame[t].astype(np.float32)
        expect = np.empty(raw_c.shape, np.int64)
        for by in range(raw_c.shape[0]):
            for bx in range(raw_c.shape[1]):
                cy = min(by // samp[ci][0], r.cell_levels.shape[0] - 1)
                cx = min(bx // samp[ci][1], r.cell_levels.shape[1] - 1)
                half = np.float32(deadzone) * quant_tables(qs[r.cell_levels[cy, cx]])[t].astype(np.float32)
                c = raw_c[by, bx]
                x = c * inverse
                expect[by, bx] = np.where(np.abs(c) < half, 0, np.trunc(x + np.copysign(np.float32(0.5), x)))
        np.testing.assert_array_equal(got_c, expect)


@pytest.mark.parametrize("shape", [(136, 200), (77, 123), (1, 1), (9, 17)])
@pytest.mark.parametrize("kind", ["4:2:0", "4:2:2", "4:4:4", "gray", "keep_rgb"])
def test_fused_encode_equals_two_pass_reference(astronaut, shape, kind):
    """The one-pass and the rate-control encoders (transform/requantise/code one MCU row at a time) write
    exactly the file that whole-image requantisation followed by whole-image entropy coding writes."""
    from semantic_jpeg.codec import encoder
    img = astronaut[:shape[0], :shape[1]]
    img = np.ascontiguousarray(img[:, :, 1] if kind == "gray" else img)
    options = {"subsampling": {"4:2:0": 2, "4:2:2": 1}.get(kind, 0)}
    if kind == "keep_rgb":
        options["keep_rgb"] = True
    sal = np.random.default_rng(3).random(img.shape[:2]).astype(np.float32)
    qs = level_qualities(5, (20, 90))
    for deadzone in (0.5, 0.9):
        one_pass = encoder._DctCoder(img, sal, 5, encoder._check_options(options, "dct"))
        trials = encoder._DctCoder(img, sal, 5, encoder._check_options(options, "dct"), reuse_transform=True)
        reference = one_pass.encode_coefficients(*one_pass.coefficients(qs, 90, deadzone))
        assert one_pass.encode(qs, 90, deadzone=deadzone) == reference
        assert trials.encode(qs, 90, deadzone=deadzone) == reference
        assert decode_pil(reference).shape[:2] == img.shape[:2]


def test_native_scan_refuses_a_buffer_too_small(astronaut):
    from semantic_jpeg.codec import encoder
    from semantic_jpeg.native import lib
    coder = encoder._DctCoder(astronaut[:64, :64], np.ones((64, 64), np.float32), 5, encoder._check_options({}, "dct"))
    coder.capacity = 100  # a scan of this image needs far more; the coder must stop, not write past the end
    guard = coder._scan_buffer[100:].copy()
    with pytest.raises(RuntimeError, match="ran out of output space"):
        coder.encode(level_qualities(5, (30, 70)), 70)
    np.testing.assert_array_equal(coder._scan_buffer[100:], guard)
    assert lib.SEMJPEG_NO_ROOM < 0


def _synthetic_coefficients(blocks, seed):
    """Quantised coefficients exercising every path of the scan writer: small values (the AcCodes table), values
    up to the baseline limits (the generic path), long zero runs (ZRL), full blocks (no EOB) and empty ones."""
    rng = np.random.default_rng(seed)
    out = []
    for bh, bw in blocks:
        c = np.zeros((bh, bw, 64), np.int16)
        kind = rng.integers(0, 4, (bh, bw))
        dense = rng.integers(-40, 41, (bh, bw, 64))
        c[kind == 1] = dense[kind == 1]  # mostly small values, some past the table's -32..31
        sparse = rng.random((bh, bw, 64)) < 0.05
        big = rng.integers(-1023, 1024, (bh, bw, 64))
        c[(kind == 2)[..., None] & sparse] = big[(kind == 2)[..., None] & sparse]  # long runs, large values
        c[kind == 3, 63] = rng.choice([-1, 1, -1023, 1023], int(np.sum(kind == 3)))  # last position: no EOB
        c[..., 0] = rng.integers(-1023, 1024, (bh, bw))  # DC differences up to 2046: size 11
        out.append(c)
    return out


@pytest.mark.parametrize("kind", ["4:2:0", "gray"])
def test_native_scan_round_trips_every_symbol_kind(astronaut, kind):
    """Coefficients with values up to the baseline limits, ZRL runs and full blocks decode to themselves, and
    the scan is the same when the end of the output buffer is close (the writer's checked path)."""
    from semantic_jpeg.codec import encoder, rdo
    img = np.ascontiguousarray(astronaut[:75, :101, 1] if kind == "gray" else astronaut[:75, :101])
    coder = encoder._DctCoder(img, np.ones(img.shape[:2], np.float32), 5, encoder._check_options({}, "dct"))
    coefs = _synthetic_coefficients(coder.blocks, 7)
    frame = quant_tables(50)
    data = coder.encode_coefficients_optimised(coefs, frame)
    back, _ = rdo.read_coefficients(data)
    for got, want in zip(back, coefs):
        np.testing.assert_array_equal(got[:want.shape[0], :want.shape[1]], want)
    huffman, tables = coder.optimal_huffman(coder.scan_frequencies(coefs))
    scan = coder._encode_scan(coefs, tables.args)
    for capacity in (len(scan) + 3, len(scan) + 100, len(scan) + 700):  # the last blocks near the end
        coder.capacity = capacity
        assert coder._encode_scan(coefs, tables.args) == scan
    coder.capacity = len(scan) - 1
    guard = coder._scan_buffer[len(scan) - 1:].copy()
    with pytest.raises(RuntimeError, match="ran out of output space"):
        coder._encode_scan(coefs, tables.args)
    np.testing.assert_array_equal(coder._scan_buffer[len(scan) - 1:], guard)


def test_native_scan_refuses_missing_symbols_and_out_of_range_values(astronaut):
    from semantic_jpeg.codec import encoder
    img = np.ascontiguousarray(astronaut[:32, :32])
    coder = encoder._DctCoder(img, np.ones((32, 32), np.float32), 5, encoder._check_options({}, "dct"))
    coefs = [np.zeros((bh, bw, 64), np.int16) for bh, bw in coder.blocks]
    coefs[0][0, 0, 5] = 3
    _, tables = coder.optimal_huffman(coder.scan_frequencies(coefs))
    for value in (1, -40, 1000):  # sizes 1, 6 and 10 after the same run: the table only has size 2 (and EOB)
        coefs[0][1, 1, 5] = value
        with pytest.raises(RuntimeError, match="missing from the Huffman table"):
            coder._encode_scan(coefs, tables.args)
    coefs[0][1, 1, 5] = 1024
    with pytest.raises(RuntimeError, match="out of the baseline range"):
        coder._encode_scan(coefs, tables.args)


def test_smooth_option_smooths(astronaut, box_map):
    sharp = decode_pil(encode(astronaut, saliency=box_map, quality=90))
    smooth = decode_pil(encode(astronaut, saliency=box_map, quality=90, smooth=100))
    detail = lambda im: np.abs(np.diff(im, axis=1)).mean()  # noqa: E731
    assert detail(smooth) < 0.9 * detail(sharp)
    with pytest.raises(ValueError, match="smooth"):
        encode(astronaut, saliency=box_map, smooth=101)


def test_stream_parser_refuses_what_it_cannot_rewrite(astronaut):
    from semantic_jpeg.codec import jpeg_stream
    with pytest.raises(jpeg_stream.JpegStreamError, match="baseline"):
        jpeg_stream.parse_baseline(_plain(astronaut, 75, progressive=True))
    with pytest.raises(jpeg_stream.JpegStreamError, match="SOI"):
        jpeg_stream.parse_baseline(b"GIF89a")
    with pytest.raises(jpeg_stream.JpegStreamError, match="truncated"):
        jpeg_stream.parse_baseline(_plain(astronaut, 75)[:300])


# ---------------------------------------------------------------- rate control

@pytest.mark.parametrize("mode", ["rdo", "dct", "mosaic"])
def test_match_jpeg_quality_within_one_percent(astronaut, box_map, mode):
    for q in (30, 50, 80):
        r = encode(astronaut, saliency=box_map, match_jpeg_quality=q, mode=mode, return_result=True)
        target = len(_plain(astronaut, q, subsampling=2))
        assert r.target_size == target
        assert abs(r.size - target) <= 0.01 * target, (q, r.size, target)


def test_rate_control_between_table_steps_uses_the_dead_zone(astronaut, box_map):
    # at high quality the integer tables make the size jump by more than 1% between neighbouring offsets
    r = encode(astronaut, saliency=box_map, match_jpeg_quality=80, mode="dct", return_result=True)
    assert abs(r.size / r.target_size - 1) <= 0.01
    assert 0.5 < r.deadzone <= 1.0
    plain = encode(astronaut, saliency=box_map, match_jpeg_quality=50, mode="dct", return_result=True)
    assert plain.deadzone == 0.5  # untouched when the offset alone meets the target


def test_target_size_and_progressive_optimize(astronaut, box_map):
    r = encode(astronaut, saliency=box_map, target_size=20000, optimize=True, progressive=True, return_result=True)
    assert abs(r.size - 20000) <= 200
    with Image.open(io.BytesIO(r.data)) as im:
        assert im.info.get("progressive") or im.info.get("progression")
        im.load()


def test_unreachable_target_warns_with_what_was_achieved(astronaut, box_map):
    with pytest.warns(RateControlWarning, match="closest is"):
        r = encode(astronaut, saliency=box_map, target_size=500, return_result=True)
    assert r.size > 500


# ---------------------------------------------------------------- Pillow options and modes

def test_metadata_passes_through(astronaut, box_map):
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90
    icc = bytes(range(256)) * 3
    b = encode(astronaut, saliency=box_map, exif=exif.tobytes(), icc_profile=icc, dpi=(300, 300),
               comment=b"semantic")
    with Image.open(io.BytesIO(b)) as im:
        assert im.getexif()[0x0112] == 6
        assert im.info["icc_profile"] == icc
        assert tuple(round(x) for x in im.info["dpi"]) == (300, 300)
        assert im.info["comment"] == b"semantic"


@pytest.mark.parametrize("size", [(1, 1), (17, 33), (33, 17), (8, 8), (16, 24), (200, 7)])
@pytest.mark.parametrize("mode", ["rdo", "dct", "mosaic"])
def test_any_size(size, mode):
    rng = np.random.default_rng(size[0] * 100 + size[1])
    rgb = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    sal = rng.random(rgb.shape[:2]).astype(np.float32)
    b = encode(rgb, saliency=sal, mode=mode, match_jpeg_quality=60 if min(size) > 8 else None)
    with Image.open(io.BytesIO(b)) as im:
        assert im.size == size
        im.load()


@pytest.mark.parametrize("pil_mode,expect", [("L", "L"), ("1", "L"), ("P", "RGB"), ("I;16", "L"), ("F", "L")])
def test_mode_conversion_rules(astronaut, pil_mode, expect):
    src = Image.fromarray(astronaut[:64, :64])
    im = src.convert(pil_mode) if pil_mode not in ("I;16", "F") else src.convert("L").convert(pil_mode)
    if pil_mode == "I;16":  # a real 16-bit image: full 0..65535 range
        im = Image.fromarray(np.asarray(src.convert("L"), np.uint16) * 257)
        assert im.mode == "I;16"
    sal = np.ones((64, 64), np.float32)
    b = encode(im, saliency=sal, quality=95, subsampling="4:4:4")
    with Image.open(io.BytesIO(b)) as out:
        assert out.mode == expect
        ref = np.asarray(src.convert(expect) if pil_mode in ("L", "I;16", "F", "P") else src.convert("1").convert("L"),
                         dtype=float)
        if pil_mode == "P":
            ref = np.asarray(im.convert("RGB"), dtype=float)
        assert psnr(np.asarray(out, float), ref) > (20 if pil_mode == "1" else 30)  # "1": binary dither


@pytest.mark.parametrize("pil_mode", ["RGBA", "LA", "CMYK"])
def test_unsupported_modes_refused(astronaut, pil_mode):
    im = Image.fromarray(astronaut[:32, :32]).convert(pil_mode)
    with pytest.raises(ValueError, match=pil_mode):
        encode(im, saliency=np.ones((32, 32), np.float32))


def test_bgr_arrays(astronaut, box_map):
    rgb_bytes = encode(astronaut, saliency=box_map)
    bgr_bytes = encode(np.ascontiguousarray(astronaut[:, :, ::-1]), saliency=box_map, color_order="BGR")
    assert rgb_bytes == bgr_bytes


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(levels=0, mode="dct"), ValueError, "levels"),
    (dict(quality_range=(70, 30), mode="dct"), ValueError, "increasing"),
    (dict(levels=5), TypeError, "mode='rdo'"),
    (dict(quality_range=(30, 70)), TypeError, "mode='rdo'"),
    (dict(quality=0), ValueError, "quality"),
    (dict(quality=101), ValueError, "quality"),
    (dict(target_size=-5), ValueError, "target_size"),
    (dict(target_size=1000, match_jpeg_quality=50), ValueError, "not both"),
    (dict(mode="fast"), ValueError, "mode"),
    (dict(qtables=[[1] * 64]), TypeError, "qtables"),
    (dict(qualty=50), TypeError, "unknown"),
    (dict(subsampling="4:1:1"), ValueError, "subsampling"),
    (dict(restart_marker_rows=1), ValueError, "restart"),
    (dict(color_order="RGBA"), ValueError, "color_order"),
])
def test_bad_parameters(astronaut, box_map, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        encode(astronaut, saliency=box_map, **kwargs)


@pytest.mark.parametrize("image,exc,match", [
    (np.zeros((0, 10, 3), np.uint8), ValueError, "empty"),
    (np.zeros((10, 10, 4), np.uint8), ValueError, "shape"),
    (np.zeros((10, 10, 3), np.int32), TypeError, "uint8"),
    (np.full((10, 10, 3), np.nan, np.float32), ValueError, "NaN"),
    (np.full((10, 10, 3), 2.0, np.float32), ValueError, r"\[0, 1\]"),
    ("picture.png", TypeError, "PIL"),
])
def test_bad_images(image, exc, match):
    with pytest.raises(exc, match=match):
        encode(image, saliency=np.ones((10, 10), np.float32))


def test_huge_image_refused_before_work(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(Image.DecompressionBombError):
        encode(np.zeros((100, 100), np.uint8), saliency=np.zeros((100, 100), np.float32))
    with pytest.raises(Image.DecompressionBombError):
        encode(Image.new("RGB", (100, 100)), saliency=np.zeros((100, 100), np.float32))
    with pytest.raises(ValueError, match="65500"):
        encode(Image.new("L", (70000, 1)), saliency=np.zeros((1, 70000), np.float32))


@pytest.mark.parametrize("sal,match", [
    (np.full((64, 64), np.nan, np.float32), "NaN"),
    (np.full((64, 64), 1.5, np.float32), r"\[0, 1\]"),
    (np.zeros((64, 128), np.float32), "aspect"),
    (np.zeros((64, 64, 3), np.float32), "HxW"),
    (np.zeros((64, 64), np.int64), "float"),
])
def test_bad_saliency(astronaut, sal, match):
    with pytest.raises((ValueError, TypeError), match=match):
        encode(astronaut[:64, :64], saliency=sal)


def test_saliency_forms_agree(astronaut, box_map):
    as_array = encode(astronaut, saliency=box_map)
    as_image = encode(astronaut, saliency=Image.fromarray((box_map * 255).astype(np.uint8)))
    as_callable = encode(astronaut, saliency=lambda rgb: box_map)
    half = np.asarray(Image.fromarray(box_map, "F").resize((256, 256), Image.NEAREST))
    as_smaller = encode(astronaut, saliency=half, return_result=True)
    assert as_array == as_image == as_callable
    assert as_smaller.saliency.shape == box_map.shape


def test_failed_encode_leaves_no_file(astronaut, tmp_path):
    out = tmp_path / "x.jpg"
    with pytest.raises(ValueError):
        encode(astronaut, out, saliency=np.full((512, 512), 2.0, np.float32))
    assert not out.exists()
    out.write_bytes(b"old")
    with pytest.raises(ValueError):
        encode(astronaut, out, saliency=np.full((512, 512), 2.0, np.float32))
    assert out.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["x.jpg"]


def test_written_file_has_ordinary_permissions(astronaut, box_map, tmp_path):
    (tmp_path / "plain.bin").write_bytes(b"x")
    encode(astronaut, tmp_path / "x.jpg", saliency=box_map)
    assert (tmp_path / "x.jpg").stat().st_mode == (tmp_path / "plain.bin").stat().st_mode


def test_writes_paths_and_file_objects(astronaut, box_map, tmp_path):
    expect = encode(astronaut, saliency=box_map)
    encode(astronaut, tmp_path / "a.jpg", saliency=box_map)
    buf = io.BytesIO()
    assert encode(astronaut, buf, saliency=box_map) is None
    assert (tmp_path / "a.jpg").read_bytes() == buf.getvalue() == expect


# ---------------------------------------------------------------- Pillow plugin

def test_pillow_semjpeg_format_and_semantic_option(astronaut, box_map, tmp_path):
    semantic_jpeg.register_pillow_plugin()  # semantic=True is opt-in (the SEMJPEG format registers on import)
    im = Image.fromarray(astronaut)
    expect = encode(astronaut, saliency=box_map, quality=60)
    a, b = io.BytesIO(), io.BytesIO()
    im.save(a, format="SEMJPEG", saliency=box_map, quality=60)
    im.save(b, format="JPEG", semantic=True, saliency=box_map, quality=60)
    assert a.getvalue() == b.getvalue() == expect
    im.save(tmp_path / "x.jpg", semantic=True, saliency=box_map, quality=60)
    assert (tmp_path / "x.jpg").read_bytes() == expect
    assert Image.MIME["SEMJPEG"] == "image/jpeg"


def test_plain_pillow_jpeg_unchanged(astronaut):
    from PIL import JpegImagePlugin
    im = Image.fromarray(astronaut)
    ours, theirs = io.BytesIO(), io.BytesIO()
    im.save(ours, format="JPEG", quality=55)
    im.encoderinfo = {"quality": 55}
    JpegImagePlugin._save(im, theirs, "")
    assert ours.getvalue() == theirs.getvalue()
    semantic_jpeg.register_pillow_plugin()  # idempotent: no double wrapping
    assert not hasattr(Image.SAVE["JPEG"].semantic_jpeg_wraps, "semantic_jpeg_wraps")


def test_failed_pillow_save_leaves_no_file(astronaut, tmp_path):
    out = tmp_path / "x.jpg"
    with pytest.raises(ValueError):
        Image.fromarray(astronaut).convert("RGBA").save(out, format="SEMJPEG", saliency=np.ones((512, 512), np.float32))
    assert not out.exists()


# ---------------------------------------------------------------- CLI

def test_cli_encode_with_map_and_heatmap(astronaut, box_map, tmp_path, capsys):
    from semantic_jpeg.cli import main
    src, mp = tmp_path / "in.png", tmp_path / "map.png"
    Image.fromarray(astronaut).save(src)
    Image.fromarray((box_map * 255).astype(np.uint8)).save(mp)
    rc = main(["encode", str(src), "-o", str(tmp_path / "out.jpg"), "--saliency-map", str(mp),
               "--match-jpeg-quality", "50", "--heatmap"])
    assert rc == 0
    assert "target" in capsys.readouterr().out
    assert Image.open(tmp_path / "out.jpg").size == (512, 512)
    assert Image.open(tmp_path / "out.heatmap.png").size == (512, 512)


def test_cli_reports_truncated_input(tmp_path, capsys):
    from semantic_jpeg.cli import main
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(_plain(np.zeros((64, 64, 3), np.uint8), 90)[:100])
    rc = main(["encode", str(bad), "-o", str(tmp_path / "o.jpg"), "--saliency-map", str(bad)])
    assert rc == 1
    assert not (tmp_path / "o.jpg").exists()


# ---------------------------------------------------------------- the shipped default model

def test_default_saliency_is_the_shipped_gaze_map():
    from semantic_jpeg.onnx_models.gaze_model import default_gaze_model
    rgb = np.ascontiguousarray(data.chelsea())
    r = encode(rgb, return_result=True)
    np.testing.assert_allclose(r.saliency, default_gaze_model().saliency_map(rgb, color_order="RGB"), atol=1e-6)
    assert r.saliency.shape == rgb.shape[:2]
    assert r.level_fractions[-1] > 0  # the cat reaches the top level


def test_readme_main_command(tmp_path, capsys):
    from semantic_jpeg.cli import main
    out = tmp_path / "chelsea.jpg"
    assert main(["encode", "--sample", "chelsea", "--match-jpeg-quality", "50", "--heatmap", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "chelsea.png ->" in printed and "target" in printed
    plain = len(_plain(np.ascontiguousarray(data.chelsea()), 50, subsampling=2))
    assert abs(out.stat().st_size - plain) <= 0.01 * plain
    assert (tmp_path / "chelsea.heatmap.png").exists()


# ---------------------------------------------------------------- "rdo" mode (jpegli core + saliency RDO)

def _jpegli(rgb, q):
    import pyjpegli
    return pyjpegli.encode(np.ascontiguousarray(rgb).tobytes(), rgb.shape[1], rgb.shape[0], q)


def _region_psnr(dec, ref, mask):
    return 10 * np.log10(255.0 ** 2 / ((dec - ref) ** 2)[mask].mean())


def test_rdo_is_the_default_mode(astronaut, box_map):
    r = encode(astronaut, saliency=box_map, return_result=True)
    assert r.mode == "rdo" == semantic_jpeg.codec.DEFAULT_MODE
    assert "rdo mode" in r.summary() and r.block_weights.shape == (64, 64)


def test_rdo_at_lambda_zero_writes_jpeglis_coefficients(astronaut, tmp_path):
    # integer-exact path: jpegli's quantised coefficients, re-coded losslessly (only the Huffman tables change)
    from semantic_jpeg.codec import encoder
    coder = encoder._RdoCoder(astronaut, np.full(astronaut.shape[:2], 0.5, np.float32),
                              encoder._check_options({}, "rdo"), core="jpegli")
    ours = read_coefficients(coder.encode(70, 0.0), tmp_path)
    theirs = read_coefficients(_jpegli(astronaut, 70), tmp_path)
    for a, b in zip(ours, theirs):
        assert np.array_equal(a, b[:a.shape[0], :a.shape[1]])


def test_rdo_native_core_at_lambda_zero_writes_the_nearest_values_under_jpeglis_tables(astronaut, tmp_path):
    from semantic_jpeg.codec import encoder, rdo
    coder = encoder._RdoCoder(astronaut, np.full(astronaut.shape[:2], 0.5, np.float32),
                              encoder._check_options({}, "rdo"))
    raw = encoder.forward_dct(coder.rgb, coder.header)
    ours = read_coefficients(coder.encode(70, 0.0), tmp_path)
    luma, chroma = rdo.jpegli_tables(70)
    p = tmp_path / "jpegli.jpg"
    p.write_bytes(_jpegli(astronaut, 70))  # the tables jpegli writes for this image
    qt = np.asarray(jpeglib.read_dct(str(p)).qt).reshape(-1, 64)
    assert np.array_equal(luma, qt[0]) and np.array_equal(chroma, qt[1])
    for c, r, t in zip(ours, raw, (luma, chroma, chroma)):
        nearest = np.rint(r / t.astype(np.float32))
        assert np.mean(c[:r.shape[0], :r.shape[1]] == nearest) > 0.9999  # float near-ties aside


def test_rdo_uniform_map_not_worse_than_jpegli_at_equal_size(astronaut):
    uniform = np.full(astronaut.shape[:2], 0.5, np.float32)
    for q in (50, 80):
        ref = _jpegli(astronaut, q)
        ours = encode(astronaut, saliency=uniform, target_size=len(ref))
        assert abs(len(ours) / len(ref) - 1) <= 0.01
        assert psnr(decode_pil(ours), astronaut) >= psnr(decode_pil(ref), astronaut) - 0.05, q


def test_rdo_saliency_moves_quality_where_the_map_says(astronaut, box_map):
    inside = box_map > 0
    uniform = encode(astronaut, saliency=box_map, strength=0, quality=50)  # no saliency: the same core
    steered = encode(astronaut, saliency=box_map, target_size=len(uniform))
    assert abs(len(steered) / len(uniform) - 1) <= 0.01
    u, s = decode_pil(uniform), decode_pil(steered)
    assert _region_psnr(s, astronaut, inside) > _region_psnr(u, astronaut, inside) + 0.5  # salient: better
    assert _region_psnr(s, astronaut, ~inside) < _region_psnr(u, astronaut, ~inside)      # the rest: worse
    # a box elsewhere moves the quality there
    other = np.zeros_like(box_map)
    other[320:480, 32:224] = 1.0
    moved = decode_pil(encode(astronaut, saliency=other, target_size=len(uniform)))
    assert _region_psnr(moved, astronaut, other > 0) > _region_psnr(u, astronaut, other > 0) + 0.5
    assert _region_psnr(moved, astronaut, inside) < _region_psnr(u, astronaut, inside)
    # against jpegli at its (Huffman-optimised) size: more than 1 dB better where the map looks
    ref = _jpegli(astronaut, 60)
    ours = decode_pil(encode(astronaut, saliency=box_map, target_size=len(encoder_module._optimize_huffman(ref))))
    assert _region_psnr(ours, astronaut, inside) > _region_psnr(decode_pil(ref), astronaut, inside) + 1.0


def test_rdo_quality_means_pillow_sized_output(astronaut, box_map):
    for q in (50, 95):
        r = encode(astronaut, saliency=box_map, quality=q, return_result=True)
        assert r.target_size == len(_plain(astronaut, q))
        assert abs(r.size / r.target_size - 1) <= 0.01, (q, r.size, r.target_size)
    assert encode(astronaut, saliency=box_map, return_result=True).target_size == len(_plain(astronaut, 75))


def test_rdo_without_rate_control_is_one_pass_at_a_fixed_quality(astronaut, box_map):
    sizes = {}
    for q in (50, 90):
        r = encode(astronaut, saliency=box_map, quality=q, rate_control=False, return_result=True)
        assert r.iterations == 1 and r.target_size is None and "target" not in r.summary()
        assert 0.6 < r.size / len(_plain(astronaut, q)) < 1.5, q  # near Pillow's size at that quality
        assert psnr(decode_pil(r.data), astronaut) > 28
        sizes[q] = r.size
    assert sizes[90] > 1.5 * sizes[50]
    # the same visual trade-off whatever the image: a half-size crop gets the same tables and lambda
    a = encode(astronaut, saliency=box_map, quality=70, rate_control=False, return_result=True)
    b = encode(astronaut[:256], saliency=box_map[:256], quality=70, rate_control=False, return_result=True)
    assert a.final_quality == b.final_quality and a.lam == b.lam
    with pytest.raises(ValueError, match="rate_control"):
        encode(astronaut, saliency=box_map, rate_control=False, target_size=20000)
    with pytest.raises(ValueError, match="rate_control"):
        encode(astronaut, saliency=box_map, rate_control=False, core="jpegli")
    with pytest.raises(ValueError, match="rate_control"):
        encode(astronaut, saliency=box_map, rate_control=False, mode="dct")
    with pytest.raises(TypeError, match="rate_control"):
        encode(astronaut, saliency=box_map, rate_control="no")


def test_rdo_weights_are_rank_based_and_clamped():
    from semantic_jpeg.codec import rdo
    rng = np.random.default_rng(0)
    means = rng.random((20, 30))
    w = rdo.rank_weights(means, 2.0)
    assert 0.25 <= w.min() < 0.3 and 3.7 < w.max() <= 4.0
    assert np.allclose(w, rdo.rank_weights(means ** 5 * 1e-6, 2.0))  # any monotone rescaling of the map
    assert np.array_equal(np.argsort(w.ravel(), kind="stable"), np.argsort(means.ravel(), kind="stable"))
    assert np.allclose(rdo.rank_weights(np.full((4, 4), 0.3), 3.0), 1.0)  # constant map: no preference


@pytest.mark.parametrize("shape", [(1, 1), (1, 40), (40, 1), (7, 9), (16, 16), (17, 33), (75, 101), (300, 2)])
def test_rdo_block_means_native_equals_numpy(shape):
    """The native block means are the numpy reference's, float for float, edge blocks (and blocks past the map)
    included."""
    from semantic_jpeg.codec import rdo
    sal = np.random.default_rng(4).random(shape).astype(np.float32) ** 3
    for px in ((8, 8), (16, 16), (8, 16), (16, 8)):
        for extra in (0, 1):
            blocks = (-(-shape[0] // px[0]) + extra, -(-shape[1] // px[1]) + extra)
            got = rdo.block_means(sal, blocks, px)
            assert got.dtype == np.float64 and got.shape == blocks
            assert got.tobytes() == rdo._block_means_numpy(sal, blocks, px).tobytes()


def test_rdo_rank_weights_average_the_ranks_of_ties():
    from semantic_jpeg.codec import rdo
    rng = np.random.default_rng(5)
    means = rng.integers(0, 7, (40, 50)).astype(np.float64) / 8  # many ties, in every order
    flat = means.ravel()
    below = np.array([np.count_nonzero(flat < v) for v in flat])
    equal = np.array([np.count_nonzero(flat == v) for v in flat])
    p = (below + (equal - 1) / 2.0 + 0.5) / flat.size  # the mean rank of each value's ties
    expect = 2.0 ** (1.5 * (2.0 * p ** rdo.RANK_GAMMA - 1.0))
    np.testing.assert_array_equal(rdo.rank_weights(means, 1.5).ravel(), expect)


def test_rdo_rd_decision_beats_its_candidates():
    # per block, the returned coefficients cost no more (weighted distortion + lambda bits, same model) than
    # keeping the start values or zeroing every AC coefficient
    from semantic_jpeg.codec import rdo
    rng = np.random.default_rng(1)
    raw = rng.normal(0, 40, (300, 64)).astype(np.float32)
    table = np.full(64, 10, np.uint16)
    start = np.rint(raw / table).astype(np.int16)
    lengths = np.full(256, 6.0, np.float32)
    w = rng.uniform(0.25, 4, 300)
    out = rdo.optimise_component(raw, start, table, w, 50.0, lengths)
    assert np.array_equal(out[:, 0], start[:, 0])  # DC kept
    dist = lambda c: (w[:, None] * (raw[:, 1:] - c[:, 1:] * 10.0) ** 2).sum(1)  # noqa: E731
    assert (dist(out) >= dist(start) - 1e-3).all() and (np.abs(out) <= np.abs(start) + 1).all()
    assert np.count_nonzero(out[w < 0.5]) / (w < 0.5).sum() < np.count_nonzero(out[w > 2]) / (w > 2).sum()


def test_rdo_native_kernel_matches_numpy_reference():
    from semantic_jpeg.codec import rdo
    rng = np.random.default_rng(2)
    raw = (rng.normal(0, 30, (2000, 64)) * np.linspace(3, 0.2, 64)).astype(np.float32)
    table = (np.arange(64) // 2 + 4).astype(np.uint16)
    start = np.rint(raw / table).astype(np.int16)
    start[rng.random(start.shape) < 0.2] = 0  # like an adaptive quantiser's extra zeros
    w, lengths = rng.uniform(0.25, 4, 2000), rng.uniform(2, 12, 256).astype(np.float32)
    for lam in (0.0, 5.0, 50.0, 500.0):
        native = rdo.optimise_component(raw, start, table, w, lam, lengths, 1.3)
        reference = rdo.optimise_component_numpy(raw, start, table, w, lam, lengths, 1.3)
        assert np.mean(native == reference) > 0.999, lam  # float sums in another order may flip a near-tie


@pytest.mark.parametrize("subsampling", [None, "4:4:4"])
def test_keep_rgb_implies_444(astronaut, box_map, subsampling, tmp_path):
    kw = {} if subsampling is None else {"subsampling": subsampling}
    for mode in ("rdo", "dct", "mosaic"):
        b = encode(astronaut, saliency=box_map, keep_rgb=True, mode=mode, **kw)
        p = tmp_path / "rgb.jpg"
        p.write_bytes(b)
        j = jpeglib.read_dct(str(p))
        assert j.jpeg_color_space == jpeglib.Colorspace.JCS_RGB and np.all(np.asarray(j.samp_factor) == 1)
        assert psnr(decode_pil(b), astronaut) > 27


def test_keep_rgb_with_subsampling_is_a_clear_error(astronaut, box_map):
    with pytest.raises(ValueError, match="keep_rgb.*4:4:4"):
        encode(astronaut, saliency=box_map, keep_rgb=True, subsampling="4:2:0")


@pytest.mark.parametrize("kwargs,match", [(dict(strength=-1), "strength"), (dict(strength=9), "strength"),
                                          (dict(headroom=-0.1), "headroom"), (dict(strength="x"), "strength"),
                                          (dict(mode="dct", strength=1.0), "rdo")])
def test_rdo_bad_parameters(astronaut, box_map, kwargs, match):
    with pytest.raises(ValueError, match=match):
        encode(astronaut, saliency=box_map, **kwargs)


def test_rdo_leaves_read_only_input_untouched(astronaut, box_map):
    img, sal = astronaut.copy(), box_map.copy()
    img.flags.writeable = False
    sal.flags.writeable = False
    encode(img, saliency=sal, quality=60)
    assert np.array_equal(img, astronaut) and np.array_equal(sal, box_map)


def test_rdo_greyscale(astronaut, box_map):
    grey = np.ascontiguousarray(astronaut[..., 1])
    r = encode(grey, saliency=box_map, quality=60, return_result=True)
    with Image.open(io.BytesIO(r.data)) as im:
        assert im.mode == "L"
        assert psnr(np.asarray(im), grey) > 30
    assert abs(r.size / r.target_size - 1) <= 0.01


def test_writing_to_a_path_keeps_links_and_permissions_and_names_the_target(tmp_path):
    """encode(fp=path) replaces atomically, like open(path, "wb") would from the outside: a private file stays
    private, a symbolic link stays a link (its target is written), and errors name the path, never the temporary
    file."""
    rgb = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    flat = np.ones((48, 64), np.float32)
    private = tmp_path / "private.jpg"
    private.write_bytes(b"old")
    os.chmod(private, 0o600)
    encode(rgb, private, saliency=flat, quality=60)
    assert Image.open(private).format == "JPEG" and (os.stat(private).st_mode & 0o777) == 0o600
    (tmp_path / "real.jpg").write_bytes(b"old")
    os.symlink("real.jpg", tmp_path / "link.jpg")
    encode(rgb, tmp_path / "link.jpg", saliency=flat, quality=60)
    assert os.path.islink(tmp_path / "link.jpg") and Image.open(tmp_path / "real.jpg").format == "JPEG"
    with pytest.raises(IsADirectoryError, match="outdir"):
        encode(rgb, f"{tmp_path / 'outdir'}/", saliency=flat, quality=60)
    with pytest.raises(FileNotFoundError, match="missing"):
        encode(rgb, tmp_path / "missing" / "x.jpg", saliency=flat, quality=60)
    assert not (tmp_path / "outdir").exists()
    assert sorted(os.listdir(tmp_path)) == ["link.jpg", "private.jpg", "real.jpg"]  # no temporary file left


@pytest.mark.parametrize("options, error", [
    ({"quality": True}, TypeError), ({"quality": "75"}, TypeError), ({"match_jpeg_quality": float("nan")}, ValueError),
    ({"match_jpeg_quality": "x"}, TypeError), ({"subsampling": True}, ValueError),
    ({"mode": "mosaic", "smooth": -1}, ValueError), ({"exif": 123}, TypeError), ({"icc_profile": "x"}, TypeError),
    ({"comment": 123}, TypeError), ({"dpi": "x"}, ValueError)])
def test_options_of_the_wrong_kind_are_refused_by_name(options, error):
    rgb = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    name = next(k for k in options if k != "mode")
    with pytest.raises(error, match=name):
        encode(rgb, saliency=np.ones((48, 64), np.float32), **options)


def test_big_endian_16_bit_images_and_huge_map_values():
    rgb16 = np.random.default_rng(0).integers(0, 65536, (48, 64, 3)).astype(">u2")
    flat = np.ones((48, 64), np.float32)
    assert encode(rgb16, saliency=flat) == encode(rgb16.astype("<u2"), saliency=flat)
    with pytest.raises(ValueError, match=r"\[0, 1\].*1e\+300"):
        encode(rgb16, saliency=np.full((48, 64), 1e300))


def test_a_thin_image_pillow_cannot_write_progressively_is_a_clear_error():
    thin = np.random.default_rng(0).integers(0, 256, (65500, 1, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="baseline JPEG"):
        encode(thin, saliency=np.ones((65500, 1), np.float32), progressive=True)
