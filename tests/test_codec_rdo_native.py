"""The native parts of the default encoder's pipeline against the libjpeg (jpeglib) steps they replace.

Entropy coding, Huffman table construction and Huffman decoding are integer-exact, so files and coefficients
are compared exactly."""
import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from skimage import data

from semantic_jpeg.codec import encode, encoder, jpeg_stream, rdo
from semantic_jpeg.native import as_pointer, lib


@pytest.fixture(scope="module")
def astronaut():
    return np.ascontiguousarray(data.astronaut()[:200, :264])  # not a multiple of the MCU size


def _ramp(shape):
    return np.linspace(0, 1, shape[0] * shape[1], dtype=np.float32).reshape(shape)


LAYOUTS = [({"subsampling": 2}, 3), ({"subsampling": 0}, 3), ({"subsampling": 1, "comment": "c"}, 3), ({}, 1)]


@pytest.mark.parametrize("options,channels", LAYOUTS)
def test_native_optimised_huffman_equals_libjpeg_recoding(astronaut, options, channels):
    img = astronaut if channels == 3 else np.ascontiguousarray(astronaut[..., 1])
    coder = encoder._RdoCoder(img, _ramp(img.shape[:2]), encoder._check_options(dict(options, optimize=True), "rdo"))
    for quality, lam in ((30, 0.0), (90, 25.0)):
        coefs, frame = coder.coefficients(quality, lam), coder.start(quality)[3]
        libjpeg = coder.dct.encode_coefficients(coefs, frame)  # libjpeg's optimize_coding re-coding
        native = coder.dct.encode_coefficients_optimised(coefs, frame)
        assert bytes(native) == bytes(libjpeg)


@pytest.mark.parametrize("core", ["native", "jpegli"])
@pytest.mark.parametrize("options,channels", LAYOUTS)
def test_counts_from_the_rdo_pass_equal_a_scan_count(astronaut, core, options, channels):
    # the native core counts DC differences (and dummy blocks) in numpy, the AC symbols in the RDO kernel
    img = astronaut if channels == 3 else np.ascontiguousarray(astronaut[..., 1])
    coder = encoder._RdoCoder(img, _ramp(img.shape[:2]), encoder._check_options(options, "rdo"), core=core)
    for lam in (0.0, 3.0, 400.0):
        coefs, freq = coder._coefficients(80, lam)
        assert np.array_equal(freq, coder.dct.scan_frequencies(coefs))
    coder.estimate(80, 3.0)  # the estimate's DC counts (cached) are those of the full pass
    coefs, freq = coder._coefficients(80, 3.0)
    assert np.array_equal(freq, coder.dct.scan_frequencies(coefs))


@pytest.mark.parametrize("options,channels", LAYOUTS)
def test_native_size_estimate_is_close_to_the_file(astronaut, options, channels):
    img = astronaut if channels == 3 else np.ascontiguousarray(astronaut[..., 1])
    coder = encoder._RdoCoder(img, _ramp(img.shape[:2]), encoder._check_options(options, "rdo"))
    for quality, lam in ((40, 0.0), (70, 10.0), (90, 2.0)):
        assert abs(coder.estimate(quality, lam) / len(coder.encode(quality, lam)) - 1) < 0.03, (quality, lam)


def test_native_size_estimate_samples_a_large_image(monkeypatch):
    # a sparse lattice of MCUs (every 16th here) still estimates within a few percent
    rng = np.random.default_rng(4)
    img = np.clip(np.kron(rng.integers(0, 255, (40, 60, 3)), np.ones((12, 12, 1))) + rng.normal(0, 8, (480, 720, 3)),
                  0, 255).astype(np.uint8)
    monkeypatch.setattr(encoder, "SAMPLE_BLOCKS", 300)
    coder = encoder._RdoCoder(img, _ramp(img.shape[:2]), encoder._check_options({}, "rdo"))
    sample = coder.sample()[0]
    assert sample[0][0].shape[0] < 0.1 * coder.blocks[0][0] * coder.blocks[0][1]
    for quality, lam in ((50, 0.0), (80, 20.0)):
        assert abs(coder.estimate(quality, lam) / len(coder.encode(quality, lam)) - 1) < 0.05, (quality, lam)


def test_native_rate_control_needs_few_full_encodes(astronaut):
    for q in (30, 60, 90):
        r = encode(astronaut, saliency=_ramp(astronaut.shape[:2]), quality=q, return_result=True)
        assert abs(r.size / r.target_size - 1) <= 0.01 and r.iterations <= 3, (q, r.iterations)


def test_rdo_kernel_from_the_nearest_values_matches_numpy_and_counts_alone():
    rng = np.random.default_rng(5)
    raw = (rng.normal(0, 30, (1500, 64)) * np.linspace(3, 0.2, 64)).astype(np.float32)
    raw[:, 0] = rng.uniform(-1000, 1000, 1500)
    table = (np.arange(64) // 2 + 4).astype(np.uint16)
    w, lengths = rng.uniform(0.25, 4, 1500), rng.uniform(2, 12, 256).astype(np.float32)
    for lam in (0.0, 5.0, 80.0):
        counted = np.zeros(257, np.int64)
        native = rdo.optimise_component(raw, None, table, w, lam, lengths, 1.3, ac_freq=counted)
        reference = rdo.optimise_component_numpy(raw, None, table, w, lam, lengths, 1.3)
        assert np.mean(native == reference) > 0.999, lam
        assert np.array_equal(native[:, 0], np.rint(raw[:, 0] / np.float32(table[0])))
        alone = np.zeros(257, np.int64)
        assert rdo.optimise_component(raw, None, table, w, lam, lengths, 1.3, ac_freq=alone, out_values=False) is None
        assert np.array_equal(alone, counted)
    with pytest.raises(ValueError, match="ac_freq"):
        rdo.optimise_component(raw, None, table, w, 1.0, lengths, out_values=False)


def test_jpegli_tables_are_those_jpegli_writes(astronaut):
    for q in (35, 80):
        _, tables = rdo.read_coefficients(rdo.jpegli_encode(astronaut, q))
        luma, chroma = rdo.jpegli_tables(q)
        assert np.array_equal(luma, tables[0]) and np.array_equal(chroma, tables[1])
        assert not luma.flags.writeable


def test_core_option(astronaut):
    sal = _ramp(astronaut.shape[:2])
    native = encode(astronaut, saliency=sal, quality=60, return_result=True)
    theirs = encode(astronaut, saliency=sal, quality=60, core="jpegli", return_result=True)
    assert native.data != theirs.data and abs(theirs.size / theirs.target_size - 1) <= 0.01
    with pytest.raises(ValueError, match="core"):
        encode(astronaut, saliency=sal, core="libjpeg")
    with pytest.raises(ValueError, match="core"):
        encode(astronaut, saliency=sal, mode="dct", core="jpegli")


def test_optimal_huffman_table_is_a_valid_length_limited_code():
    rng = np.random.default_rng(0)
    for counts in (rng.zipf(1.3, 256).astype(np.int64), np.eye(256, dtype=np.int64)[7], np.ones(256, np.int64)):
        counts = np.ascontiguousarray(np.minimum(counts, 10 ** 9))
        bits, values = np.zeros(16, np.uint8), np.zeros(256, np.uint8)
        n = lib.semjpeg_optimal_huffman(as_pointer(counts, np.int64), as_pointer(bits, np.uint8),
                                        as_pointer(values, np.uint8))
        assert n == int(bits.sum()) == int((counts > 0).sum())
        assert sorted(values[:n].tolist()) == np.flatnonzero(counts).tolist()
        assert sum(int(b) * 2.0 ** -(i + 1) for i, b in enumerate(bits)) < 1  # the all-ones code stays free


def _files(img):
    out = [rdo.jpegli_encode(img, q) for q in (10, 60, 95)]
    for sub in (0, 1, 2):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "JPEG", quality=80, subsampling=sub, optimize=sub == 2)
        out.append(buf.getvalue())
    buf = io.BytesIO()
    Image.fromarray(img[..., 0]).save(buf, "JPEG", quality=50)
    return out + [buf.getvalue()]


def test_native_decoder_reads_the_coefficients_libjpeg_reads(astronaut):
    for data_ in _files(astronaut):
        ours, our_tables = rdo._read_coefficients_native(data_)
        theirs, their_tables = rdo._read_coefficients_jpeglib(data_)
        assert len(ours) == len(theirs)
        for a, b in zip(ours, theirs):
            assert np.array_equal(a, b[:a.shape[0], :a.shape[1]])
        for a, b in zip(our_tables, their_tables):
            assert np.array_equal(a, b)


def test_corrupt_or_unsupported_streams_fall_back_or_raise(astronaut):
    good = rdo.jpegli_encode(astronaut, 70)
    garbled = bytearray(good)
    garbled[len(good) // 2:len(good) // 2 + 64] = bytes(range(192, 256))
    try:  # a clear exception (native decoder, then libjpeg) or some coefficients; never a crash
        coefs, _ = rdo.read_coefficients(bytes(garbled))
        assert coefs[0].dtype == np.int16
    except (ValueError, OSError):
        pass
    with pytest.raises(jpeg_stream.JpegStreamError):
        rdo._read_coefficients_native(good[:300])
    buf = io.BytesIO()
    Image.fromarray(astronaut).save(buf, "JPEG", quality=70, progressive=True)
    coefs, _ = rdo.read_coefficients(buf.getvalue())  # progressive: read by libjpeg
    assert coefs[0].shape[-1] == 64


@pytest.mark.parametrize("options", [{"subsampling": 2}, {"subsampling": 1}, {"subsampling": 0, "keep_rgb": True}])
def test_strips_give_the_same_file(astronaut, options, monkeypatch):
    sal = _ramp(astronaut.shape[:2])
    whole = encode(astronaut, saliency=sal, quality=60, **options)
    monkeypatch.setattr(encoder, "RAW_CACHE_BYTES", 0)       # recompute the DCT in strips ...
    monkeypatch.setattr(encoder, "RAW_STRIP_BYTES", 20000)   # ... of a few MCU rows, coded strip by strip
    assert encode(astronaut, saliency=sal, quality=60, **options) == whole


def test_rdo_kernel_counts_the_symbols_of_the_blocks_it_writes():
    rng = np.random.default_rng(3)
    raw = (rng.standard_normal((300, 64)) * rng.uniform(1, 200, (300, 1))).astype(np.float32)
    table = np.full(64, 6, np.uint16)
    start = np.clip(np.rint(raw / table), -1023, 1023).astype(np.int16)
    lengths = np.full(256, 8.0, np.float32)
    for lam in (0.5, 40.0, 5000.0):
        counted = np.zeros(257, np.int64)
        out = rdo.optimise_component(raw, start, table, np.ones(300), lam, lengths, ac_freq=counted)
        expected = np.zeros(257, np.int64)
        assert lib.semjpeg_ac_frequencies(as_pointer(out, np.int16), out.shape[0], as_pointer(expected, np.int64)) == 0
        assert np.array_equal(counted, expected)
        assert np.array_equal(out, rdo.optimise_component(raw, start, table, np.ones(300), lam, lengths))


@pytest.mark.parametrize("core", ["native", "jpegli"])
def test_an_encode_leaves_no_reference_cycle_holding_its_arrays(astronaut, core):
    # a cycle would keep each encode's DCT and coefficient arrays until the cyclic GC ran: a batch's resident
    # set grew by about 100 MB that way
    import gc
    gc.collect()
    gc.disable()
    try:
        encode(astronaut, saliency=_ramp(astronaut.shape[:2]), quality=60, core=core)
        alive = [o for o in gc.get_objects() if isinstance(o, encoder._RdoCoder)]
    finally:
        gc.enable()
    assert not alive


def test_median_equals_numpy_bit_for_bit_without_importing_numpy_ma():
    rng = np.random.default_rng(3)
    for n in (1, 2, 7, 64, 1001, 4096):
        for values in (rng.lognormal(3, 2, n), rng.integers(0, 5, n).astype(np.float64),
                       rng.normal(size=n).astype(np.float32)):
            assert rdo.median(values) == np.median(values)
    with pytest.raises(ValueError, match="non-empty 1-D"):
        rdo.median(np.zeros(0))
    code = ("import sys, numpy as np, semantic_jpeg; "
            "semantic_jpeg.encode(np.zeros((64, 64, 3), np.uint8), saliency=np.ones((64, 64), np.float32)); "
            "assert 'numpy.ma' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
