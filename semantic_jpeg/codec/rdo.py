"""Saliency-weighted rate-distortion optimised quantisation under jpegli's tables (the default ``mode="rdo"``).

The tables are jpegli's (Alakuijala et al., "jpegli", Google, 2024). The native core (the default) quantises
the exact float DCT itself: for every AC coefficient of every block it chooses

    v in {round(x / q), one magnitude lower, 0} minimising
    w_b * m_b * c_k * (q_mean / q) * (x - v q)^2 + lambda * bits(v)

where x is the exact float DCT coefficient, q the table step (q_mean: the mean AC step of the table, so errors
count in proportion to jpegli's psychovisual step sizes), w_b the block's weight from the saliency map, m_b a
contrast-masking weight (errors in busy blocks are less visible, the principle of jpegli's adaptive
quantisation: :func:`masking_weights`) and c_k the component's weight in RGB squared error. A per-block
end-of-block search (the choice of the last kept coefficient, as in trellis quantisation: Guo et al. /
mozjpeg) accounts for the EOB and run-length effects that the per-coefficient decision cannot see. Bit costs
come from the Huffman code lengths of the optimal tables of the nearest values. ``core="jpegli"`` instead
starts from jpegli's own quantised coefficients at a quality above the target (``pyjpegli`` encodes, the
native module decodes the coefficients), with jpegli's value as a fourth candidate; with a uniform map and
lambda = 0 it writes exactly jpegli's coefficients.

Block weights (the documented transfer): each block's mean saliency m_b is turned into its percentile rank
p_b in (0, 1) among the component's blocks (ties share their mean rank; a constant map gives w_b = 1), and
``w_b = 2 ** (strength * (2 p_b^3 - 1))``: weights span [2^-strength, 2^strength] whatever the map's scale,
gamma or peakedness, so a wrong map can at most move each block's lambda by that factor. The cube gives most
blocks a similar low weight and the top-ranked blocks the high ones (a fixation map is peaked), so the loss is
spread over the unimportant area instead of grading it.

The constants were chosen on OSIE images 1601-1700 (grids, ``benchmarks/bench_vs_jpegli.py --tune``): for the
native core the strength and the headroom curves; masking 0.5, the cube and the frequency weighting (and the
jpegli core's strength 1.25, headroom 0.1 with its taper and 3% minimum) for the jpegli core, and kept.
"""
import functools
import io
import os
import tempfile

import numpy as np

from . import jpeg_stream

ZIGZAG = jpeg_stream.ZIGZAG
DEFAULT_STRENGTH = 1.75    # native core: weights span [2^-1.75, 2^1.75] = [0.30, 3.4]
JPEGLI_CORE_STRENGTH = 1.25  # core="jpegli": [0.42, 2.4]
DEFAULT_MASKING = 0.5      # exponent of the contrast-masking weight (0: plain squared error)
DEFAULT_MASKING_FLOOR = 25.0
RANK_GAMMA = 3.0           # shape of the rank transfer: w = 2 ** (strength (2 p^gamma - 1))
FREQ_BETA = 1.0            # squared error at coefficient i weighted by (mean(q) / q_i) ** beta
MAX_STRENGTH = 4.0
# Headroom of core="jpegli": the RDO starts from the lowest jpegli quality whose (pyjpegli) file is at least
# (1 + h) x the target,
# h = headroom x clip((100 - q) / 40, 0.5, 1) with q the jpegli quality that meets the target (less headroom at
# high quality, where the RDO's error model loses more against jpegli's own allocation). A uniform map starts
# at the target itself, i.e. from jpegli's own file.
DEFAULT_HEADROOM = 0.1
# The native core (the default, ``core="native"``): the RDO starts from the nearest values under the tables of
# the lowest jpegli quality whose nearest values are estimated at (1 + h) x the target; h is interpolated over
# that quality, less at high quality (where the RDO's error model gains less over nearest rounding), more with a
# non-uniform map (bits to move) than with a uniform one (the RDO then acts as a trellis quantiser only).
# Chosen on OSIE 1601-1700 with PSNR and PSNR-F grids (never on the reported NUS or Kodak images; the grid is
# benchmarks/results/codec_vs_jpegli_tune.json).
NATIVE_HEADROOM = ((62.0, 80.0, 88.0), (0.18, 0.15, 0.12))
NATIVE_UNIFORM_HEADROOM = ((57.0, 77.0, 86.0), (0.09, 0.05, 0.03))


# Where the native core's rate control settles, by the jpegli quality of the tables it starts from: lambda over
# the mean AC step of the luma table (median over OSIE 1601-1700, default headroom; a single image may be 2x
# either way). The first lambda the rate control tries, and the lambda of ``rate_control=False``.
LAMBDA_PER_STEP = ((53.0, 62.0, 70.0, 81.0, 89.0, 97.0), (0.49, 0.46, 0.41, 0.31, 0.27, 0.25))
UNIFORM_LAMBDA_PER_STEP = ((46.0, 57.0, 65.0, 77.0, 87.0, 96.0), (0.49, 0.43, 0.38, 0.24, 0.17, 0.17))
# ... and how far below Q + (100 - Q) / 4 (the jpegli quality whose file is usually Pillow-Q-sized) the start
# quality of a uniform map lies (less headroom); with a map it is that quality (within 1 on the same images)
UNIFORM_START_OFFSET = ((55.0, 62.5, 70.0, 81.2, 88.8, 96.2), (9.1, 5.6, 4.9, 3.8, 2.3, 0.1))


def lambda_per_step(quality, uniform):
    """Typical lambda / mean AC luma step at the start quality ``quality`` (see LAMBDA_PER_STEP)."""
    return float(np.interp(quality, *(UNIFORM_LAMBDA_PER_STEP if uniform else LAMBDA_PER_STEP)))


def native_headroom(quality, uniform):
    """The native core's default headroom at jpegli quality ``quality`` (see NATIVE_HEADROOM)."""
    return float(np.interp(quality, *(NATIVE_UNIFORM_HEADROOM if uniform else NATIVE_HEADROOM)))


CORES = ("native", "jpegli")
DEFAULT_CORE = "native"
MAX_HEADROOM = 3.0
# ... and, with a non-uniform map, at least this much above the target in our own bytes (optimised Huffman
# tables), so that small images and coarse jpegli quality steps still leave something to reallocate.
MIN_HEADROOM = 0.03
# Squared RGB error per unit squared error of Y, Cb, Cr (JFIF inverse transform, summed over R, G, B, / 3).
COMPONENT_RGB_WEIGHT = (1.0, (0.344136 ** 2 + 1.772 ** 2) / 3, (1.402 ** 2 + 0.714136 ** 2) / 3)


def _temp_dir():
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


def jpegli_encode(rgb, quality):
    """jpegli JPEG (4:2:0, optimised Huffman tables) of an RGB uint8 array at integer ``quality``."""
    import pyjpegli  # type: ignore[import-not-found]  # ships a .pyi without py.typed
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    return pyjpegli.encode(memoryview(rgb).cast("B"), rgb.shape[1], rgb.shape[0], int(quality))


_TABLES: dict = {}


def jpegli_tables(quality):
    """jpegli's (luma, chroma) quantisation tables at integer ``quality``, natural order, read-only. They do
    not depend on the image (checked on Kodak at qualities 20-95), so they are read once per quality from a
    16x16 pyjpegli file (0.1 ms) and kept."""
    quality = int(quality)
    if quality not in _TABLES:
        _, tables = read_coefficients(jpegli_encode(np.zeros((16, 16, 3), np.uint8), quality))
        for t in tables:
            t.flags.writeable = False
        _TABLES[quality] = (tables[0], tables[1])
    return _TABLES[quality]


def read_coefficients(data):
    """Quantised coefficients of a baseline JPEG: (list of (blocks_h, blocks_w, 64) int16 in natural order,
    list of the 64-entry quantisation table of each component, natural order). A single-scan baseline stream
    without restart markers (what jpegli writes) is decoded natively from memory
    (``semjpeg_decode_baseline_scan``: 4 ms instead of 30 ms with libjpeg through a temp file for a 1080p
    file, on a busy 2-core machine); other streams are read by libjpeg (jpeglib)."""
    try:
        return _read_coefficients_native(data)
    except jpeg_stream.JpegStreamError:
        return _read_coefficients_jpeglib(data)


def _read_coefficients_native(data):
    from ..native import as_output_pointer, as_pointer, ffi, lib
    header = jpeg_stream.parse_baseline(data)
    qt = {}
    for marker, payload in header.segments:
        if marker == jpeg_stream.DQT:
            p = 0
            while p < len(payload):
                precision, ident = payload[p] >> 4, payload[p] & 15
                n = 128 if precision else 64
                if p + 1 + n > len(payload):
                    raise jpeg_stream.JpegStreamError("truncated DQT segment")
                raw = np.frombuffer(payload, np.dtype(">u2") if precision else np.uint8, 64, p + 1)
                table = np.empty(64, np.uint16)
                table[ZIGZAG] = raw
                qt[ident] = table
                p += 1 + n
    comps = header.components
    if any(c.quant_table not in qt for c in comps):
        raise jpeg_stream.JpegStreamError("quantisation table missing")
    ids = sorted({c.dc_table for c in comps} | {c.ac_table for c in comps})
    if any((cls, i) not in header.huffman for cls in (0, 1) for i in {(c.dc_table, c.ac_table)[cls] for c in comps}):
        raise jpeg_stream.JpegStreamError("Huffman table missing")
    n_tables = max(ids) + 1
    bits = np.zeros((2, n_tables, 16), np.uint8)
    values = np.zeros((2, n_tables, 256), np.uint8)
    n_values = np.zeros((2, n_tables), np.int64)
    for (cls, i), (b, v) in header.huffman.items():
        if i < n_tables and cls in (0, 1):
            bits[cls, i], n_values[cls, i] = b, len(v)
            values[cls, i, :len(v)] = np.frombuffer(v, np.uint8)
    # the scan starts after the SOS segment, whose payload parse_baseline returned
    sos = data.find(b"\xff\xda" + (len(header.sos_payload) + 2).to_bytes(2, "big") + header.sos_payload)
    start = sos + 4 + len(header.sos_payload)
    blocks = header.blocks()
    coefs = [np.empty((bh, bw, 64), np.int16) for bh, bw in blocks]
    scan = np.frombuffer(data, np.uint8, len(data) - start, start)
    mcus_v, mcus_h = header.mcus()
    # The struct holds bare pointers: every cdata it points to is bound to a name here (``buffers``), so it stays
    # alive until the call returns.
    coef_views = [as_output_pointer(c, np.int16) for c in coefs]
    buffers = dict(
        scan=as_pointer(scan, np.uint8), blocks_h=ffi.new("int[]", [b[0] for b in blocks]),
        blocks_w=ffi.new("int[]", [b[1] for b in blocks]), samp_h=ffi.new("int[]", [c.samp_h for c in comps]),
        samp_v=ffi.new("int[]", [c.samp_v for c in comps]), dc_bits=as_pointer(bits[0], np.uint8),
        dc_values=as_pointer(values[0], np.uint8), dc_n_values=ffi.new("int[]", n_values[0].tolist()),
        ac_bits=as_pointer(bits[1], np.uint8), ac_values=as_pointer(values[1], np.uint8),
        ac_n_values=ffi.new("int[]", n_values[1].tolist()), dc_table=ffi.new("int[]", [c.dc_table for c in comps]),
        ac_table=ffi.new("int[]", [c.ac_table for c in comps]), coefs=ffi.new("int16_t *[]", coef_views))
    args = ffi.new("semjpeg_decode_baseline_scan_args *", dict(
        scan_len=scan.size, n_components=len(comps), mcus_v=mcus_v, mcus_h=mcus_h, n_tables=n_tables, **buffers))
    rc = lib.semjpeg_decode_baseline_scan(args)
    if rc != 0:
        raise jpeg_stream.JpegStreamError("corrupt baseline scan")
    return coefs, [qt[c.quant_table] for c in comps]


def _read_coefficients_jpeglib(data):
    """:func:`read_coefficients` by libjpeg (jpeglib) through a temp file; blocks arrays may be padded to
    whole MCUs."""
    import jpeglib
    with tempfile.TemporaryDirectory(dir=_temp_dir()) as tmp:
        path = os.path.join(tmp, "in.jpg")
        with open(path, "wb") as f:
            f.write(data)
        jpeg = jpeglib.read_dct(path)
        jpeg.load()
        comps = [c for c in (jpeg.Y, jpeg.Cb, jpeg.Cr) if c is not None]
        qt = np.asarray(jpeg.qt).reshape(-1, 64).astype(np.uint16)
        tables = [qt[int(i)] for i in jpeg.quant_tbl_no[:len(comps)]]
        coefs = [np.ascontiguousarray(c.reshape(c.shape[0], c.shape[1], 64), dtype=np.int16) for c in comps]
    return coefs, tables


def _category(v):
    """JPEG magnitude category (number of bits of |v|), vectorised."""
    a = np.abs(v).astype(np.int32)
    out = np.zeros(a.shape, np.int32)
    nz = a > 0
    out[nz] = np.floor(np.log2(a[nz])).astype(np.int32) + 1
    return out


# Annex K.3 AC code lengths as a fallback for symbols absent from an optimised table (luma, chroma)
@functools.cache
def _annex_k_lengths():
    header = jpeg_stream.parse_baseline(_tiny_pillow_jpeg())
    out = []
    for table_id in (0, 1):
        _, sizes = jpeg_stream.huffman_code_table(*header.huffman[(1, table_id)])
        out.append(sizes.astype(np.float32))
    return tuple(out)


def _tiny_pillow_jpeg():
    from PIL import Image
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "JPEG", quality=75)
    return buf.getvalue()


def optimal_table(counts):
    """(BITS: 16 code counts by length, HUFFVAL: the symbols in code order) of the optimal length-limited Huffman
    table for the first 256 of ``counts``, built as libjpeg builds optimised tables (native)."""
    from ..native import as_pointer, lib
    counts = np.ascontiguousarray(counts[:256], dtype=np.int64)
    bits, values = np.zeros(16, np.uint8), np.zeros(256, np.uint8)
    n = lib.semjpeg_optimal_huffman(as_pointer(counts, np.int64), as_pointer(bits, np.uint8),
                                    as_pointer(values, np.uint8))
    if n < 0:
        raise RuntimeError(f"native Huffman table builder failed (code {n})")
    return bits, values[:n]


def code_lengths(counts, ac=True):
    """Code length (bits) of each of 256 symbols in the optimal (length-limited, libjpeg-built) Huffman table
    for ``counts``; with ``ac``, symbols that do not occur take their Annex K AC length plus one (so that a
    trial that starts to use them pays about what an optimised table would charge), else 0."""
    bits, values = optimal_table(counts)
    lengths = np.zeros(256, np.float32)
    lengths[values] = np.repeat(np.arange(1, 17, dtype=np.float32), bits)
    if ac:
        lengths = np.where(lengths > 0, lengths, _annex_k_lengths()[0] + 1)
    return lengths


def ac_code_lengths(data):
    """Per component, the AC Huffman code length (bits) of every (run << 4 | size) symbol in the JPEG ``data``;
    symbols absent from its (optimised) table take their Annex K length plus one."""
    header = jpeg_stream.parse_baseline(data)
    out = []
    for i, comp in enumerate(header.components):
        _, sizes = jpeg_stream.huffman_code_table(*header.huffman[(1, comp.ac_table)])
        sizes = sizes.astype(np.float32)
        fallback = _annex_k_lengths()[min(i, 1)] + 1
        out.append(np.where(sizes > 0, sizes, fallback))
    return out


def block_means(saliency, blocks, block_px):
    """Mean of the HxW map over each block of a component: ``blocks`` (blocks_h, blocks_w), ``block_px``
    (height, width) of one block in image pixels; edge blocks average over the pixels they cover."""
    bh, bw = blocks
    saliency = np.asarray(saliency, np.float32)
    if saliency.ndim == 2 and saliency.shape[1] >= 2 and bh >= 2:
        # natively, float for float the sums below (numpy adds the rows of a block one after another when it
        # reduces across rows; with a single column or a single block row it would sum pairwise instead,
        # so those stay in numpy): 1.9x faster
        from ..native import as_output_pointer, as_pointer, lib
        saliency = np.ascontiguousarray(saliency)
        out = np.empty((bh, bw), np.float64)
        rc = lib.semjpeg_block_means(as_pointer(saliency, np.float32), saliency.shape[0], saliency.shape[1], bh, bw,
                                     int(block_px[0]), int(block_px[1]), as_output_pointer(out, np.float64))
        if rc != 0:
            raise RuntimeError(f"native block means failed (code {rc})")
        return out
    return _block_means_numpy(saliency, blocks, block_px)


def _block_means_numpy(saliency, blocks, block_px):
    """:func:`block_means` in numpy (the reference of the native kernel)."""
    bh, bw = blocks
    ph, pw = block_px
    # sums over each block's rows (a contiguous reduction), then over its columns: 5x faster than one mean
    # over axes (1, 3) at 1080p; a part-block at an edge counts its last row / column again for each one
    # missing (the edge repeated, without a padded copy of the map)
    rows = _edge_block_sums(np.asarray(saliency, np.float32), bh, ph)
    cols = _edge_block_sums(np.ascontiguousarray(rows.T), bw, pw)
    return cols.T.astype(np.float64) / (ph * pw)


def _edge_block_sums(a, n, size):
    """Sums of ``size`` consecutive rows of ``a``, ``n`` of them, rows past the end repeating the last."""
    full = min(n, a.shape[0] // size)
    out = np.empty((n, a.shape[1]), np.float32)
    if full:
        out[:full] = a[:full * size].reshape(full, size, -1).sum(axis=1)
    for i in range(full, n):  # at most the last block rows
        part = a[i * size:(i + 1) * size]
        out[i] = part.sum(axis=0) + (size - part.shape[0]) * a[-1]
    return out


def rank_weights(means, strength):
    """Block weights 2 ** (strength (2 p - 1)) from the percentile rank p of each block mean (ties averaged)."""
    flat = means.ravel()
    if np.ptp(flat) == 0:
        return np.ones(means.shape)
    # any sort order will do (numpy's default, SIMD quicksort, is 1.7x faster than a stable one here): the run
    # of a value's ties in it, and so their shared rank, does not depend on how the ties are ordered
    order = np.argsort(flat)
    sorted_vals = flat[order]
    # average rank of ties: first and last index of each run of equal values (runs found in one pass)
    new = np.empty(flat.size, bool)
    new[:1] = True
    np.not_equal(sorted_vals[1:], sorted_vals[:-1], out=new[1:])
    starts = np.flatnonzero(new)
    run_of = np.cumsum(new) - 1
    ends = np.empty_like(starts)  # one past the last index of each run
    ends[:-1], ends[-1:] = starts[1:], flat.size
    ranks = np.empty(flat.size, np.float64)
    ranks[order] = (starts[run_of] + (ends[run_of] - 1)) / 2.0
    p = (ranks + 0.5) / flat.size
    return (2.0 ** (strength * (2.0 * p ** RANK_GAMMA - 1.0))).reshape(means.shape)


def block_variance(raw):
    """Each block's AC variance (mean squared AC coefficient, float64) of (N, 64) float32 DCT blocks, in
    chunks."""
    v = np.empty(raw.shape[0])
    for i in range(0, raw.shape[0], 8192):  # float32 einsum: 4x faster than squaring a float64 copy
        ac = raw[i:i + 8192, 1:]
        v[i:i + 8192] = np.einsum("ij,ij->i", ac, ac) / 63.0
    return v


def masking_weights(raw, alpha, floor=DEFAULT_MASKING_FLOOR, variance=None):
    """Per-block visibility weights from local contrast masking: ``((floor + m) / (floor + v_b)) ** alpha``,
    v_b the block's AC variance (mean squared AC coefficient, pixel units squared), m its median over the
    component, clipped to [1/8, 8]. Errors in busy blocks are less visible than in flat ones (the principle
    of jpegli's adaptive quantisation); alpha = 0 gives plain squared error. ``variance``: v_b already
    computed (:func:`block_variance`); ``raw`` is then not read."""
    if alpha == 0:
        return np.ones(raw.shape[0] if variance is None else variance.shape[0])
    v = block_variance(raw) if variance is None else variance
    return np.clip(((floor + median(v)) / (floor + v)) ** alpha, 0.125, 8.0)


def median(values: np.ndarray) -> float:
    """``np.median`` of a 1-D array without NaNs, computed as numpy computes it (a partition; the mean of the two
    middle values for an even count), but without the ``numpy.ma`` import that ``np.median`` makes on its first
    call: 17 ms of every process's first encode, so of every batch worker's start."""
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"median needs a non-empty 1-D array, got shape {values.shape}")
    k = values.size // 2
    if values.size % 2:
        return float(np.partition(values, k)[k])
    middle = np.partition(values, [k - 1, k])
    return float((middle[k - 1] + middle[k]) / 2)


def optimise_component(raw, coefs, table, weights, lam, ac_lengths, component_weight=1.0, ac_freq=None,
                       out_values=True, out=None):
    """Rate-distortion optimised AC coefficients of one component (native kernel ``semjpeg_rdo_decisions``;
    :func:`optimise_component_numpy` is its reference, and the arguments are the same). The native kernel
    is about 22x faster than the numpy version (20 ms vs 448 ms for 32400 synthetic blocks, a 1080p luma plane,
    on a busy 2-core machine). ``ac_freq``: an int64 array of 257 to which the AC symbol counts of the
    returned blocks are added (for optimised Huffman tables without another pass). ``coefs`` None: start from
    the nearest values round(x / q), DC included (the native core); then ``out_values=False`` only counts
    (returns None). ``out``: the (n, 64) int16 array to write the values into (returned)."""
    from ..native import as_output_pointer, as_pointer, ffi, lib
    raw = np.ascontiguousarray(raw, dtype=np.float32).reshape(-1, 64)
    if coefs is None:  # start from the nearest values (the DC too)
        coefs_p, count_only = ffi.NULL, out_values is False
    else:
        coefs = np.ascontiguousarray(coefs, dtype=np.int16).reshape(-1, 64)
        if raw.shape != coefs.shape:
            raise ValueError("optimise_component: inconsistent shapes")
        coefs_p, count_only = as_pointer(coefs, np.int16), False
    table = np.ascontiguousarray(table, dtype=np.uint16)
    bw = np.ascontiguousarray(np.asarray(weights, np.float32).ravel() * np.float32(component_weight))
    fw = np.ones(64, np.float32)
    if FREQ_BETA:
        fw[ZIGZAG[1:]] = (table[ZIGZAG[1:]].astype(np.float32).mean() / table[ZIGZAG[1:]]) ** np.float32(FREQ_BETA)
    lengths = np.ascontiguousarray(ac_lengths, dtype=np.float32)
    if bw.size != raw.shape[0] or table.size != 64 or lengths.size != 256:
        raise ValueError("optimise_component: inconsistent shapes")
    if ac_freq is not None and (ac_freq.dtype != np.int64 or ac_freq.shape != (257,)):
        raise ValueError("optimise_component: ac_freq must be an int64 array of 257 counts")
    if count_only and ac_freq is None:
        raise ValueError("optimise_component: out_values=False needs ac_freq")
    if out is not None and (out.dtype != np.int16 or out.shape != (raw.shape[0], 64) or not out.flags.c_contiguous
                            or not out.flags.writeable):
        raise ValueError("optimise_component: out must be a writeable C-contiguous int16 array (n, 64)")
    if count_only:
        out = None
    elif out is None:
        out = np.empty((raw.shape[0], 64), np.int16)
    rc = lib.semjpeg_rdo_decisions_counted(
        as_pointer(raw, np.float32), coefs_p, raw.shape[0], as_pointer(table, np.uint16),
        as_pointer(bw, np.float32), as_pointer(fw, np.float32), float(lam), as_pointer(lengths, np.float32),
        ffi.NULL if out is None else as_pointer(out, np.int16),
        ffi.NULL if ac_freq is None else as_output_pointer(ac_freq, np.int64))
    if rc != 0:
        raise RuntimeError(f"native RDO refused its arguments (code {rc})")
    return out


def optimise_component_numpy(raw, coefs, table, weights, lam, ac_lengths, component_weight=1.0):
    """Rate-distortion optimised AC coefficients of one component (numpy reference of the native kernel).

    raw: float (N, 64) exact DCT in natural order; coefs: int (N, 64) starting values (jpegli's) in natural
    order; table: 64 steps (natural); weights: (N,) block weights; lam: lambda in squared-error units per bit;
    ac_lengths: 256 code lengths (bits) of the AC symbols. Returns new int16 (N, 64) coefficients (natural
    order); the DC coefficients are kept. ``coefs`` None: the nearest values (DC included)."""
    if coefs is None:
        coefs = np.rint(raw.astype(np.float32) / table.astype(np.float32))
        coefs = np.concatenate([np.clip(coefs[:, :1], -2047, 2047), np.clip(coefs[:, 1:], -1023, 1023)], axis=1)
    n = raw.shape[0]
    x = raw[:, ZIGZAG].astype(np.float32)
    k = coefs[:, ZIGZAG].astype(np.int32)
    q = table[ZIGZAG].astype(np.float32)
    wd = (weights.astype(np.float32) * np.float32(component_weight))[:, None]
    lam = np.float32(lam)
    ac_x, ac_k, ac_q = x[:, 1:], k[:, 1:], q[1:]
    fw = ((ac_q.mean() / ac_q) ** np.float32(FREQ_BETA)).astype(np.float32)[None, :] if FREQ_BETA else np.float32(1)
    wd = wd * fw
    # run of zeros before each AC position in jpegli's block (for the (run, size) symbol cost)
    idx = np.arange(1, 64, dtype=np.int32)
    last_nz = np.maximum.accumulate(np.where(ac_k != 0, idx, 0), axis=1)
    prev = np.concatenate([np.zeros((n, 1), np.int32), last_nz[:, :-1]], axis=1)
    run = idx - prev - 1
    zrl = np.float32(ac_lengths[0xF0])
    run_cost = (run // 16) * zrl
    run16 = (run % 16) << 4

    def bits(v):
        cat = _category(v)
        cost = ac_lengths[np.minimum(run16 | cat, 255)] + cat + run_cost
        return np.where(v != 0, cost, np.float32(0)).astype(np.float32)

    nearest = np.clip(np.rint(ac_x / ac_q), -1023, 1023).astype(np.int32)
    lower = ac_k - np.sign(ac_k)
    best = ac_k.copy()
    best_cost = wd * (ac_x - ac_k * ac_q) ** 2 + lam * bits(ac_k)
    for v in (lower, np.zeros_like(ac_k), nearest):
        cost = wd * (ac_x - v * ac_q) ** 2 + lam * bits(v)
        better = cost < best_cost
        best_cost = np.where(better, cost, best_cost)
        best = np.where(better, v, best)
    # end of block: keep positions 1..L (best choice each), zero the rest, pay EOB when L < 63
    zero_cost = wd * ac_x ** 2 * np.ones_like(ac_x)
    keep = np.concatenate([np.zeros((n, 1), np.float32), np.cumsum(best_cost, axis=1)], axis=1)  # L = 0..63
    tail = np.concatenate([np.cumsum(zero_cost[:, ::-1], axis=1)[:, ::-1], np.zeros((n, 1), np.float32)], axis=1)
    eob = np.full(64, lam * np.float32(ac_lengths[0x00]), np.float32)
    eob[63] = 0
    total = keep + tail + eob
    last = np.argmin(total, axis=1)
    best = np.where(np.arange(1, 64)[None, :] <= last[:, None], best, 0)
    out = np.empty((n, 64), np.int16)
    out[:, ZIGZAG] = np.concatenate([k[:, :1], best], axis=1).astype(np.int16)
    return out
