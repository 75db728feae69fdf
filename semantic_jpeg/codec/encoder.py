"""Semantic JPEG encoding with rate control.

- ``"rdo"`` (default): jpegli's quantised coefficients re-decided by saliency-weighted rate-distortion
  optimisation and re-coded with optimised Huffman tables (see :mod:`semantic_jpeg.codec.rdo`). The size
  is always controlled: ``quality=Q`` (default 75) targets the size of a plain Pillow JPEG at quality Q.

The two level modes (Algorithm 1 and eq. 2.7 of Prakash et al., "Semantic perceptual image compression
using deep convolution networks", DCC 2017) give each cell (8x8 block, or MCU when chroma is
subsampled) the quality of its saliency level:

- ``"dct"``: the native module computes the DCT of every block once (colour conversion,
  downsampling and transform as a JPEG encoder does them); each block keeps the coefficients its level's
  quantiser would keep, at the precision of the frame tables (quality Q_f), and the native module
  entropy-codes the scan under the header Pillow writes for the same options. The file carries exactly
  these coefficients: no decode/re-encode generation loss, and rate control re-runs only requantisation
  and entropy coding.
- ``"mosaic"``: Algorithm 1 as printed: the image is JPEG-encoded and decoded at each level's quality, each
  cell takes its pixels from its level's decoded image, and the mosaic is encoded at Q_f.

Rate control moves every quality (levels and Q_f) by one shared offset and bisects it until the file is
within ``size_tolerance`` of the target. Integer quantisation tables make the size a step function of the
offset; when the target lies inside one step, "dct" mode raises the dead zone of the level quantisers (see
``semjpeg_requantize``) at the offset above the step, which removes coefficients one at a time.
"""
import functools
import io
import math
import numbers
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from .._cliutil import write_file
from ..native import as_output_pointer, as_pointer, ffi, lib
from . import jpeg_stream, rdo
from .inputs import image_to_array, saliency_to_array
from .quality import check_quality, level_qualities, quant_tables

MODES = ("rdo", "dct", "mosaic")
DEADZONE = 0.5  # a level keeps |c| >= DEADZONE * q_n: exactly what its quantiser keeps
DEFAULT_MODE = "rdo"
SUBSAMPLING = {-1: 2, 0: 0, 1: 1, 2: 2, "4:4:4": 0, "4:2:2": 1, "4:2:0": 2}
CELL_SIZE = {0: (8, 8), 1: (8, 16), 2: (16, 16)}  # (height, width) of one level cell for RGB
# Pillow JPEG save options that pass through with Pillow's meaning. Quantisation is ours ("quality",
# "qtables"), and the DCT mode writes one interleaved baseline scan (no restart markers, no abbreviated streams).
PILLOW_OPTIONS = {"subsampling", "progressive", "progression", "optimize", "exif", "icc_profile", "dpi", "comment",
                  "xmp", "smooth", "keep_rgb", "restart_marker_blocks", "restart_marker_rows"}
MOSAIC_ONLY_OPTIONS = {"restart_marker_blocks", "restart_marker_rows"}


class RateControlWarning(UserWarning):
    """A size target could not be met within tolerance; the message says what was achieved."""


@dataclass
class EncodeResult:
    """What :func:`encode` did. ``data`` is the JPEG file."""
    data: bytes
    mode: str
    width: int
    height: int
    final_quality: float
    level_qualities: list
    level_fractions: list          # share of cells at each level, least salient first
    cell_size: tuple               # (height, width) in pixels of the unit that takes one level
    cell_levels: np.ndarray = field(repr=False)  # level of each cell
    saliency: np.ndarray = field(repr=False)     # the HxW map used, float32 in [0, 1]
    target_size: int | None = None
    iterations: int = 1
    deadzone: float = DEADZONE     # "dct" mode: raised above 0.5 only by rate control, between two table steps
    lam: float | None = None    # "rdo" mode: lambda (squared error per bit) of the file
    block_weights: np.ndarray | None = field(default=None, repr=False)  # "rdo" mode: weight of each luma block

    @property
    def size(self) -> int:
        return len(self.data)

    def summary(self) -> str:
        if self.mode == "rdo":
            target = (f", target {self.target_size} B ({self.size / self.target_size - 1:+.2%})"
                      if self.target_size else "")  # None with rate_control=False
            return (f"{self.width}x{self.height} rdo mode: {self.size} B from jpegli quality "
                    f"{self.final_quality:.0f}, lambda {self.lam:.3g}{target}")
        levels = ", ".join(f"Q{q:.1f}:{f:.0%}" for q, f in zip(self.level_qualities, self.level_fractions))
        target = f", target {self.target_size} B ({self.size / self.target_size - 1:+.2%})" if self.target_size else ""
        return (f"{self.width}x{self.height} {self.mode} mode: {self.size} B, final quality {self.final_quality:.1f}, "
                f"levels [{levels}]{target}")


def encode(image, fp=None, *, saliency=None, levels=None, quality_range=None, quality=None, target_size=None,
           match_jpeg_quality=None, size_tolerance=0.01, mode=DEFAULT_MODE, color_order="RGB",
           strength=None, headroom=None, masking=rdo.DEFAULT_MASKING, core=rdo.DEFAULT_CORE, rate_control=True,
           return_result=False, **jpeg_options):
    """Encode ``image`` as a standard JPEG whose salient regions get higher quality.

    Default ``mode="rdo"``: the exact DCT quantised under jpegli's tables by a saliency-weighted
    rate-distortion optimisation (minimising weighted squared error + lambda x bits, block by block) at a
    controlled size (:mod:`semantic_jpeg.codec.rdo`). Its size target is ``target_size`` bytes, else the size of
    a plain Pillow JPEG of the image at ``match_jpeg_quality``, else at ``quality`` (default 75: "quality=Q"
    means Pillow-Q-sized output with the bits moved to where the map looks). ``strength`` (default 1.75;
    1.25 with ``core="jpegli"``; 0..4) bounds the block weights to [2^-strength, 2^strength] (0: no saliency);
    ``headroom`` (default None: 18% at jpegli quality 62 down to 12% at 88 with a map, 9% to 3% with a uniform
    one): the optimisation starts from the tables of the lowest jpegli quality whose nearest values are
    estimated at (1 + headroom) x the target; ``masking`` (default 0.5): exponent of the per-block
    contrast-masking weight on squared error (0: plain squared error, best PSNR; higher: flat areas kept, as
    jpegli's adaptive quantisation does); ``core``: "native" (default) or "jpegli" (start from jpegli's own
    coefficients, encoded by pyjpegli: slower, kept for comparison); ``levels``/``quality_range`` do not apply
    (passing them with ``mode="rdo"`` raises TypeError). ``rate_control=False`` (native core): one pass at a fixed
    quality for users who do not care about bytes: jpegli's tables at quality Q + (100 - Q) / 4 (Q: ``quality``,
    default 75; the jpegli quality whose file is typically the size of Pillow's at Q; lower with a uniform map)
    and the lambda where the rate control typically settles for them; the size is not measured or adjusted (on
    photographs it lands near Pillow Q's size, see docs/codec.md), the same visual trade-off on every image,
    and about 1.9x faster than a ``quality=Q`` encode (docs/codec.md).

    image: PIL image, or numpy HxW / HxWx3 uint8 (or float in [0, 1]); ``color_order`` "RGB" (default) or
        "BGR" says how 3-channel arrays are ordered. Mode rules: see :mod:`semantic_jpeg.codec.inputs`.
    fp: None (return the bytes), a path (written atomically), or a binary file object.
    saliency: None (the shipped gaze model), an HxW array in [0, 1], a PIL "L" image, a model with
        ``msroi_map``, or a callable taking the RGB uint8 array and returning the map.
    levels, quality_range: level modes only: k saliency levels (default 5) coded at qualities from Q_l to Q_h
        (default (30, 70); eq. 2.7).
    quality: "rdo" mode: see above. Level modes: the final quality Q_f (default Q_h); in "dct" mode it is the
        quality of the tables written in the file; levels above it are capped by it.
    target_size: file size in bytes; match_jpeg_quality: Q, meaning the size of a plain Pillow JPEG at Q with
        the same options. Met within ``size_tolerance`` (default 1%) by bisection; RateControlWarning when not.
    mode: "rdo" (default), "dct" (saliency levels, single pass in the DCT domain) or "mosaic" (Algorithm 1 of
        Prakash et al., DCC 2017, as printed).
    return_result: return an :class:`EncodeResult` (levels, qualities, map, size) instead of bytes/None.
    jpeg_options: Pillow's JPEG options (subsampling, progressive, optimize, exif, icc_profile, dpi, comment,
        xmp, smooth, keep_rgb; restart markers in "mosaic" mode only). keep_rgb implies 4:4:4.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    options = _check_options(jpeg_options, mode)
    if mode == "rdo":
        if strength is None:
            strength = rdo.JPEGLI_CORE_STRENGTH if core == "jpegli" else rdo.DEFAULT_STRENGTH
        if isinstance(strength, bool) or not isinstance(strength, (int, float, np.integer, np.floating)) \
                or not 0 <= strength <= rdo.MAX_STRENGTH:
            raise ValueError(f"strength must be a number in [0, {rdo.MAX_STRENGTH:g}], got {strength!r}")
        if headroom is not None and (isinstance(headroom, bool) or not isinstance(
                headroom, (int, float, np.integer, np.floating)) or not 0 <= headroom <= rdo.MAX_HEADROOM):
            raise ValueError(f"headroom must be None or a number in [0, {rdo.MAX_HEADROOM:g}], got {headroom!r}")
        if core not in rdo.CORES:
            raise ValueError(f"core must be one of {rdo.CORES}, got {core!r}")
        if isinstance(masking, bool) or not isinstance(masking, (int, float, np.integer, np.floating)) \
                or not 0 <= masking <= 2:
            raise ValueError(f"masking must be a number in [0, 2], got {masking!r}")
        if quality is not None:
            check_quality(quality)
        if levels is not None or quality_range is not None:
            raise TypeError("levels= and quality_range= set the saliency levels of mode='dct' and mode='mosaic'; "
                            "mode='rdo' (the default) allocates continuously: use strength= for how far quality "
                            "follows the map and quality=, target_size= or match_jpeg_quality= for the size")
    elif strength is not None or headroom is not None or masking != rdo.DEFAULT_MASKING \
            or core != rdo.DEFAULT_CORE:
        raise ValueError("strength, headroom, masking and core apply to mode='rdo' only")
    qualities = level_qualities(5 if levels is None else levels, (30, 70) if quality_range is None else quality_range)
    final_quality = qualities[-1] if quality is None or mode == "rdo" else check_quality(quality)
    if target_size is not None and match_jpeg_quality is not None:
        raise ValueError("give target_size or match_jpeg_quality, not both")
    if not isinstance(rate_control, (bool, np.bool_)):
        raise TypeError(f"rate_control must be True or False, got {rate_control!r}")
    if not rate_control:
        if mode != "rdo" or core != "native":
            raise ValueError("rate_control=False is a one-pass mode of mode='rdo' with core='native'")
        if target_size is not None or match_jpeg_quality is not None:
            raise ValueError("rate_control=False encodes at a fixed quality without a size target: "
                             "target_size= and match_jpeg_quality= need rate_control=True")
    if not (isinstance(size_tolerance, (int, float)) and 0 < size_tolerance < 1):
        raise ValueError(f"size_tolerance must be a fraction in (0, 1), got {size_tolerance!r}")
    if target_size is not None:
        if isinstance(target_size, bool) or not isinstance(target_size, (int, np.integer)) or target_size <= 0:
            raise ValueError(f"target_size must be a positive number of bytes, got {target_size!r}")
    rgb = image_to_array(image, color_order)
    if mode == "rdo" and target_size is None and match_jpeg_quality is None and rate_control:
        match_jpeg_quality = 75 if quality is None else quality
    jpegli_guess = 85  # "rdo" mode: where the search for jpegli's quality at the target size starts
    if match_jpeg_quality is not None:
        match_jpeg_quality = check_quality(match_jpeg_quality, "match_jpeg_quality")
        # jpegli's quality at the size of Pillow's Q is usually near Q + (100 - Q) / 4 (Kodak, ImageNet)
        jpegli_guess = int(round(match_jpeg_quality + (100 - match_jpeg_quality) / 4))
        buf = io.BytesIO()
        _save_jpeg(Image.fromarray(rgb), buf, quality=int(round(match_jpeg_quality)), **options)
        target_size = buf.tell()
        del buf
    if rgb.size >= TRIM_PIXELS:
        _release_freed_memory()  # Pillow's copy of the image
    sal = saliency_to_array(saliency, rgb)
    if rgb.size >= TRIM_PIXELS:
        _release_freed_memory()  # the map's conversion buffers
    if mode == "rdo":
        rdo_coder = _RdoCoder(rgb, sal, options, strength=float(strength),
                              headroom=None if headroom is None else float(headroom), masking=float(masking),
                              core=core)
        if rate_control:
            match = _match_size_rdo if rdo_coder.jpegli_core else _match_size_native
            data, iterations = match(rdo_coder, int(target_size), size_tolerance, jpegli_guess)
        else:
            data, iterations = _fixed_quality(rdo_coder, 75 if quality is None else quality), 1
        result = EncodeResult(
            data=bytes(data), mode=mode, width=rgb.shape[1], height=rgb.shape[0],
            final_quality=float(data.jpegli_quality), level_qualities=[float(data.jpegli_quality)],
            level_fractions=[1.0], cell_size=rdo_coder.cell_size, cell_levels=rdo_coder.cell_levels,
            saliency=sal, target_size=None if target_size is None else int(target_size), iterations=iterations,
            deadzone=DEADZONE,
            lam=float(data.lam), block_weights=rdo_coder.saliency_weights[0].reshape(rdo_coder.blocks[0]))
        _write(result.data, fp)
        if return_result:
            return result
        return result.data if fp is None else None

    coder: Any
    if mode == "dct":
        coder = _DctCoder(rgb, sal, len(qualities), options, reuse_transform=target_size is not None)
    else:
        coder = _MosaicCoder(rgb, sal, len(qualities), options)
    if target_size is None:
        data, iterations = coder.encode(qualities, final_quality), 1
    else:
        data, iterations = _match_size(coder, qualities, final_quality, int(target_size), size_tolerance)
    shift = data.shift
    result = EncodeResult(
        data=bytes(data), mode=mode, width=rgb.shape[1], height=rgb.shape[0],
        final_quality=float(_shifted(final_quality, shift)),
        level_qualities=[float(q) for q in _shifted(qualities, shift)],
        level_fractions=list(np.bincount(coder.cell_levels.ravel(), minlength=len(qualities)) / coder.cell_levels.size),
        cell_size=coder.cell_size, cell_levels=coder.cell_levels, saliency=sal,
        target_size=None if target_size is None else int(target_size), iterations=iterations,
        deadzone=data.deadzone)
    _write(result.data, fp)
    if return_result:
        return result
    return result.data if fp is None else None


class _Encoded(bytes):
    """JPEG bytes that remember the quality offset and dead zone they were made with."""
    shift = 0.0
    deadzone = DEADZONE


def _shifted(q, shift):
    return np.clip(np.asarray(q, dtype=np.float64) + shift, 1.0, 100.0)


_METADATA_TYPES = (("exif", (bytes, Image.Exif), "bytes or a PIL.Image.Exif"), ("icc_profile", bytes, "bytes"),
                   ("xmp", bytes, "bytes"), ("comment", (str, bytes), "str or bytes"))


def _check_options(jpeg_options, mode):
    unknown = set(jpeg_options) - PILLOW_OPTIONS
    if unknown & {"quality", "qtables"}:
        raise TypeError("quantisation is set by semantic_jpeg: use quality=/quality_range= (qtables are not accepted)")
    if unknown:
        raise TypeError(f"unknown JPEG option(s): {', '.join(sorted(unknown))}")
    if mode != "mosaic" and set(jpeg_options) & MOSAIC_ONLY_OPTIONS:
        raise ValueError("restart markers are only supported in mode='mosaic'")
    options = {k: v for k, v in jpeg_options.items() if v is not None}
    if options.get("keep_rgb"):
        if SUBSAMPLING.get(options.get("subsampling", 0), None) != 0:
            raise ValueError("keep_rgb=True stores R, G and B at full resolution: it needs subsampling='4:4:4' "
                             f"(or no subsampling option), got subsampling={options['subsampling']!r}")
        options["subsampling"] = 0
    if "smooth" in options:
        smooth = options["smooth"]
        if isinstance(smooth, bool) or not isinstance(smooth, (int, np.integer)) or not 0 <= smooth <= 100:
            raise ValueError(f"smooth must be an integer in [0, 100], got {smooth!r}")
    for key, kinds, what in _METADATA_TYPES:
        if key in options and not isinstance(options[key], kinds):
            raise TypeError(f"{key} must be {what}, got {type(options[key]).__name__}")
    if "dpi" in options:
        dpi = options["dpi"]
        numbers_ok = isinstance(dpi, (tuple, list)) and len(dpi) == 2 and all(
            isinstance(d, numbers.Real) and not isinstance(d, bool) and 0 < float(d) < 65536 for d in dpi)
        if not numbers_ok:
            raise ValueError(f"dpi must be two numbers in (0, 65536) (x, y), got {dpi!r}")
    if "subsampling" in options:
        if isinstance(options["subsampling"], bool) or options["subsampling"] not in SUBSAMPLING:
            raise ValueError(f"subsampling must be one of {sorted(map(str, SUBSAMPLING))}, "
                             f"got {options['subsampling']!r}")
        options["subsampling"] = SUBSAMPLING[options["subsampling"]]
    else:
        options["subsampling"] = 2
    return options


def _cell_size(rgb, options):
    if rgb.ndim == 2 or options.get("keep_rgb"):
        return (8, 8)
    return CELL_SIZE[options["subsampling"]]


def _cell_levels(sal, cell_size, n_levels):
    cells = np.empty((-(-sal.shape[0] // cell_size[0]), -(-sal.shape[1] // cell_size[1])), np.uint8)
    rc = lib.semjpeg_block_levels(as_pointer(sal, np.float32), sal.shape[0], sal.shape[1],
                                  cell_size[0], cell_size[1], n_levels, as_pointer(cells, np.uint8))
    if rc != 0:
        raise RuntimeError("native block level assignment failed")
    return cells


def _pillow_bytes(array, tables, options):
    """Pillow JPEG of ``array`` with the given quantisation tables (luma, chroma) and options."""
    buf = io.BytesIO()
    qtables = [list(map(int, t)) for t in (tables[:1] if array.ndim == 2 else tables)]
    _save_jpeg(Image.fromarray(array), buf, qtables=qtables, **options)
    return buf.getvalue()


def _save_jpeg(image, buf, **options):
    """Pillow's JPEG save, with a clear error for the images its progressive/optimised writer cannot take: it
    sizes libjpeg's output buffer by the pixel count, too small for very thin images (e.g. 65500x1); plain
    Pillow fails on them the same way."""
    try:
        image.save(buf, "JPEG", **options)
    except OSError as exc:
        if "broken data stream" not in str(exc):
            raise
        kind = "a progressive" if options.get("progressive") or options.get("progression") else "an optimised"
        raise ValueError(f"Pillow cannot write this {image.width}x{image.height} image as {kind} JPEG (its "
                         "output buffer is too small for so thin an image); write it as a baseline JPEG") from exc


def _header_bytes(corner, options):
    """A Pillow JPEG of the image's 1x1 ``corner`` with the quantisation tables all 1, for its header segments
    (which neither the pixel nor the tables' values change); made once for the last few option sets (a Pillow
    encode: 0.1 ms of each encode)."""
    try:
        return _header_bytes_of(corner.shape, corner.dtype.str, tuple(sorted(options.items())))
    except TypeError:  # an unhashable option value
        return _pillow_bytes(np.ascontiguousarray(corner), np.ones((2, 64), np.uint16), options)


@functools.lru_cache(maxsize=8)
def _header_bytes_of(shape, dtype, option_items):
    return _pillow_bytes(np.zeros(shape, dtype), np.ones((2, 64), np.uint16), dict(option_items))


def _code_table(bits, values):
    """:func:`jpeg_stream.huffman_code_table` of a header's table, read-only, made once for the last few
    tables (the header's are Pillow's standard ones: 6 tables, 0.07 ms of each encode)."""
    return _code_table_of(tuple(bits), bytes(values))


@functools.lru_cache(maxsize=16)
def _code_table_of(bits, values):
    codes = jpeg_stream.huffman_code_table(bits, values)
    for table in codes:
        table.flags.writeable = False
    return codes


class _MosaicCoder:
    """Algorithm 1: k encode/decode passes, a native per-cell mosaic, one final encode."""

    def __init__(self, rgb, sal, n_levels, options):
        self.rgb, self.options = rgb, options
        self.cell_size = _cell_size(rgb, options)
        self.cell_levels = _cell_levels(sal, self.cell_size, n_levels)
        self.used = np.unique(self.cell_levels)
        self.level_options = {k: options[k] for k in ("subsampling", "keep_rgb") if k in options}

    def mosaic(self, qualities):
        """The mosaic image I' of Algorithm 1 (lines 2-5) for the given level qualities."""
        stack = np.empty((len(self.used),) + self.rgb.shape, np.uint8)
        level_to_image = np.zeros(256, np.uint8)
        for i, level in enumerate(self.used):
            data = _pillow_bytes(self.rgb, quant_tables(qualities[level]), self.level_options)
            with Image.open(io.BytesIO(data)) as decoded:
                stack[i] = np.asarray(decoded)
            level_to_image[level] = i
        out = np.empty_like(self.rgb)
        channels = 1 if self.rgb.ndim == 2 else 3
        rc = lib.semjpeg_mosaic_select(as_pointer(stack, np.uint8), len(self.used), self.rgb.shape[0],
                                       self.rgb.shape[1], channels, as_pointer(self.cell_levels, np.uint8),
                                       as_pointer(level_to_image, np.uint8), self.cell_size[0], self.cell_size[1],
                                       as_pointer(out, np.uint8))
        if rc != 0:
            raise RuntimeError("native mosaic selection failed")
        return out

    def encode(self, qualities, final_quality, shift=0.0):
        data = _Encoded(_pillow_bytes(self.mosaic(_shifted(qualities, shift)),
                                      quant_tables(_shifted(final_quality, shift)), self.options))
        data.shift = shift
        return data


class _DctCoder:
    """Single pass in the DCT domain: per-block requantisation fused with native baseline entropy coding.

    One encode transforms, requantises and entropy-codes the image one MCU row at a time
    (``semjpeg_encode_image_scan``). ``reuse_transform`` (rate control) keeps the float DCT of every block,
    and each trial requantises and codes it (``semjpeg_requantize_scan``). Neither holds a whole-image array
    of quantised coefficients; :meth:`coefficients` makes one for inspection and tests."""

    def __init__(self, rgb, sal, n_levels, options, reuse_transform=False):
        self.options = options
        self.optimize = bool(options.get("optimize"))
        self.progressive = bool(options.get("progressive") or options.get("progression"))
        header_options = {k: v for k, v in options.items() if k not in ("progressive", "progression", "optimize")}
        self.header = jpeg_stream.parse_baseline(_header_bytes(rgb[:1, :1], header_options)).with_size(*rgb.shape[:2])
        self.rgb = _smoothed(rgb, options["smooth"]) if options.get("smooth") else np.ascontiguousarray(rgb)
        self.to_ycbcr = rgb.ndim == 3 and not options.get("keep_rgb")
        self._raw = forward_dct(self.rgb, self.header, self.to_ycbcr) if reuse_transform else None
        comps = self.header.components
        hmax, vmax = max(c.samp_h for c in comps), max(c.samp_v for c in comps)
        self.cell_size = (8 * vmax, 8 * hmax) if len(comps) > 1 else (8, 8)
        self.cell_levels = _cell_levels(sal, self.cell_size, n_levels)
        self.blocks = self.header.blocks()
        # per component (dc codes, dc sizes, ac codes, ac sizes); constant across rate-control trials
        self._huffman = [_code_table(*self.header.huffman[(0, c.dc_table)])
                         + _code_table(*self.header.huffman[(1, c.ac_table)]) for c in comps]
        self._huffman_args = [ffi.new(f"const {ctype} *[]", [as_pointer(t[i], t[i].dtype) for t in self._huffman])
                              for i, ctype in enumerate(("uint32_t", "uint8_t", "uint32_t", "uint8_t"))]
        self._sampling_args = (ffi.new("int[]", [c.samp_h for c in comps]),
                               ffi.new("int[]", [c.samp_v for c in comps]))
        self._block_args = (ffi.new("int[]", [bh for bh, _ in self.blocks]),
                            ffi.new("int[]", [bw for _, bw in self.blocks]))
        self.capacity = 2 * 64 * sum(bh * bw for bh, bw in self.blocks) + 4096  # worst case: 2 bytes/coefficient
        self._scan_buffer = np.empty(self.capacity, np.uint8)

    @property
    def raw(self):
        """The float DCT of every block of each component (see :func:`forward_dct`)."""
        return self._raw if self._raw is not None else forward_dct(self.rgb, self.header, self.to_ycbcr)

    def _tables(self, qualities, final_quality):
        """Per component (level tables levels x 64, frame table 64), and the frame tables (luma, chroma)."""
        level_tables = np.stack([quant_tables(q) for q in qualities])  # levels x 2 x 64
        frame = quant_tables(final_quality)
        return [(np.ascontiguousarray(level_tables[:, min(c.quant_table, 1), :]),
                 np.ascontiguousarray(frame[min(c.quant_table, 1)])) for c in self.header.components], frame

    def coefficients(self, qualities, final_quality, deadzone=DEADZONE):
        """Per component, the coefficients written in the file (units of the frame tables), and the frame
        tables: what :meth:`encode` entropy-codes, as whole-image arrays (blocks_h, blocks_w, 64)."""
        tables, frame = self._tables(qualities, final_quality)
        comps = self.header.components
        out = [np.empty((bh, bw, 64), np.int16) for bh, bw in self.blocks]
        ch, cw = self.cell_levels.shape
        cell_level = as_pointer(self.cell_levels, np.uint8)
        for comp, raw, (lv, ft), coefs in zip(comps, self.raw, tables, out):
            per_cell = (comp.samp_v, comp.samp_h) if len(comps) > 1 else (1, 1)
            # the struct holds bare pointers: the cdata views below stay referenced until the call returns
            raw_p, lv_p, ft_p, out_p = (as_pointer(raw, np.float32), as_pointer(lv, np.uint16),
                                        as_pointer(ft, np.uint16), as_output_pointer(coefs, np.int16))
            args = ffi.new("semjpeg_requantize_args *", dict(
                raw=raw_p, blocks_h=raw.shape[0], blocks_w=raw.shape[1], cell_level=cell_level, cells_h=ch,
                cells_w=cw, blocks_per_cell_v=per_cell[0], blocks_per_cell_h=per_cell[1], levels=len(qualities),
                level_tables=lv_p, frame_table=ft_p, deadzone=deadzone, out=out_p))
            _check_native(lib.semjpeg_requantize(args), "requantisation")
        return out, frame

    def encode(self, qualities, final_quality, shift=0.0, deadzone=DEADZONE):
        tables, frame = self._tables(_shifted(qualities, shift), _shifted(final_quality, shift))
        level_args = ffi.new("const uint16_t *[]", [as_pointer(lv, np.uint16) for lv, _ in tables])
        frame_args = ffi.new("const uint16_t *[]", [as_pointer(ft, np.uint16) for _, ft in tables])
        ch, cw = self.cell_levels.shape
        # the structs hold bare pointers: every array they point to stays referenced here until the call returns
        cell_level = as_pointer(self.cell_levels, np.uint8)
        common = dict(samp_h=self._sampling_args[0], samp_v=self._sampling_args[1], blocks_h=self._block_args[0],
                      blocks_w=self._block_args[1], cell_level=cell_level, cells_h=ch, cells_w=cw,
                      levels=len(qualities), level_tables=level_args, frame_tables=frame_args, deadzone=deadzone,
                      **_huffman_fields(self._huffman_args), out=as_output_pointer(self._scan_buffer, np.uint8),
                      capacity=self.capacity)
        if self._raw is None:  # one encode: transform, requantise and code in one native pass
            image = as_pointer(self.rgb, np.uint8)
            args = ffi.new("semjpeg_encode_image_scan_args *", dict(
                image=image, height=self.rgb.shape[0], width=self.rgb.shape[1], channels=len(tables),
                to_ycbcr=int(self.to_ycbcr), **common))
            length = lib.semjpeg_encode_image_scan(args)
        else:
            raw_views = [as_pointer(r, np.float32) for r in self._raw]
            raw_args = ffi.new("const float *[]", raw_views)
            mcus_v, mcus_h = self.header.mcus()
            trial = ffi.new("semjpeg_requantize_scan_args *", dict(
                n_components=len(tables), raw=raw_args, mcus_v=mcus_v, mcus_h=mcus_h, **common))
            length = lib.semjpeg_requantize_scan(trial)
        _check_native(length, "semantic encode")
        data = self._assemble(self._scan_buffer[:length].tobytes(), frame)
        data.shift, data.deadzone = shift, deadzone
        return data

    def encode_coefficients(self, coefs, frame):
        """The file for given quantised coefficients (as :meth:`coefficients` returns them): the two-pass
        reference of :meth:`encode`."""
        return self._assemble(self._encode_scan(coefs, self._huffman_args), frame)

    def _encode_scan(self, coefs, huffman_args):
        """The baseline scan of ``coefs`` (per component, int16 blocks) coded with ``huffman_args`` (the four
        pointer arrays: dc codes, dc sizes, ac codes, ac sizes), as bytes."""
        # the struct holds bare pointers: every array it points to stays referenced here until the call returns
        coef_views = [as_pointer(c, np.int16) for c in coefs]
        coef_args = ffi.new("const int16_t *[]", coef_views)
        mcus_v, mcus_h = self.header.mcus()
        args = ffi.new("semjpeg_encode_baseline_scan_args *", dict(
            n_components=len(coefs), coefs=coef_args, blocks_h=self._block_args[0], blocks_w=self._block_args[1],
            samp_h=self._sampling_args[0], samp_v=self._sampling_args[1], **_huffman_fields(huffman_args),
            mcus_v=mcus_v, mcus_h=mcus_h, out=as_output_pointer(self._scan_buffer, np.uint8), capacity=self.capacity))
        length = lib.semjpeg_encode_baseline_scan(args)
        _check_native(length, "entropy coder")
        return self._scan_buffer[:length].tobytes()

    def scan_frequencies(self, coefs):
        """Symbol counts (DC, AC) x component x 257 (int64) of the scan of ``coefs`` (dummy blocks included)."""
        freq = np.zeros((2, len(coefs), 257), np.int64)
        rc = lib.semjpeg_scan_frequencies(
            len(coefs), ffi.new("const int16_t *[]", [as_pointer(c, np.int16) for c in coefs]), *self._block_args,
            *self._sampling_args, *self.header.mcus(), as_pointer(freq[0], np.int64), as_pointer(freq[1], np.int64))
        _check_native(rc, "symbol count")
        return freq

    def encode_coefficients_optimised(self, coefs, frame, freq=None):
        """The file for given quantised coefficients with optimised Huffman tables, byte for byte what
        :meth:`encode_coefficients` gives with ``optimize=True`` (libjpeg's lossless re-coding), made natively:
        symbol counts of the scan, libjpeg's optimal-table construction, then one native entropy-coding pass.
        About 10 ms instead of 55 ms (libjpeg through a temp file) for a 1080p image on a busy 2-core machine.
        ``freq``: the symbol counts of the scan (:meth:`scan_frequencies`) when the caller has them."""
        huffman, tables = self.optimal_huffman(self.scan_frequencies(coefs) if freq is None else freq)
        return self.assemble_optimised(self._encode_scan(coefs, tables.args), frame, huffman)

    def optimal_huffman(self, freq):
        """(DHT tables {(class, id): (bits, values)}, their codes as native arguments: ``.args``) built from
        the symbol counts ``freq`` ((DC, AC) x component x 257) as libjpeg builds optimised tables."""
        comps = self.header.components
        huffman, codes = {}, {}
        for cls in (0, 1):
            for ident, total in self.table_sums(freq[cls], cls).items():
                bits, values = rdo.optimal_table(total)
                huffman[(cls, ident)] = (bits.tolist(), values.tobytes())
                codes[(cls, ident)] = jpeg_stream.huffman_code_table(*huffman[(cls, ident)])
        return huffman, _HuffmanArgs([codes[(0, c.dc_table)] + codes[(1, c.ac_table)] for c in comps])

    def table_sums(self, counts, cls):
        """{table id: the symbol counts (component x 257 ``counts``) of the components coded with it, summed}, for
        the DC (``cls`` 0) or AC (1) tables, by table id."""
        comps = self.header.components
        return {ident: sum(counts[i] for i, c in enumerate(comps) if (c.dc_table, c.ac_table)[cls] == ident)
                for ident in sorted({(c.dc_table, c.ac_table)[cls] for c in comps})}

    def assemble_optimised(self, scan, frame, huffman):
        frame_tables = frame[:1] if len(self.blocks) == 1 else frame
        return _Encoded(jpeg_stream.assemble_optimised(self.header, frame_tables, huffman, scan))

    def _assemble(self, scan, frame):
        data = jpeg_stream.assemble(self.header, frame[:1] if len(self.blocks) == 1 else frame, scan)
        if self.progressive:
            data = _reencode_progressive(data, frame, self.options)
        elif self.optimize:
            data = _optimize_huffman(data)
        return _Encoded(data)


_EXTRA_BITS = (np.arange(256), np.arange(256) & 15)  # magnitude bits after a DC / AC symbol


def _lattice_shear(k):
    """The shear s of the sampling lattice (mx + s my) % k == 0: coprime with k, so that every column residue
    is sampled (a shear sharing a factor with k samples only some columns: with 5 and k = 15, every 5th MCU
    column, and estimates missed by up to 3.5%), and near 0.38 k (the golden section), which spreads the points
    evenly in both directions."""
    s = max(1, int(round(0.382 * k)))
    while math.gcd(s, k) != 1:
        s += 1
    return s


def _dc_steps(tables):
    """The DC steps of per-component ``tables``: what the DC counts depend on (their cache key)."""
    return tuple(int(t[0]) for t in tables)


def _nearest_dc(dc, table):
    """The nearest DC values of float DC coefficients ``dc`` under ``table``, as the RDO kernel writes them."""
    return np.clip(np.rint(dc / np.float32(table[0])), -2047, 2047)


SAMPLE_BLOCKS = 2048     # native-core rate control searches on about this many sampled luma blocks ...
MAX_SAMPLE_STEP = 64     # ... at least every 64th MCU
RAW_CACHE_BYTES = 24 << 20   # "rdo" mode keeps the float DCT of images up to this size (about 4 megapixels)
RAW_STRIP_BYTES = 8 << 20    # ... else recomputes it in strips of about this size


def _huffman_fields(huffman_args) -> dict:
    """The four Huffman pointer arrays (dc codes, dc sizes, ac codes, ac sizes) as native struct fields."""
    return dict(zip(("dc_code", "dc_size", "ac_code", "ac_size"), huffman_args, strict=True))


@functools.lru_cache(maxsize=2)
def _scan_order(blocks, sampling, mcus):
    """:meth:`_RdoCoder._scan_order` of a frame layout (per component (blocks_h, blocks_w), (samp_v, samp_h), and
    the MCU rows and columns); the last two layouts are kept (0.1 ms of each encode of a 1024x768 image), as
    read-only int32 indices (a 64-megapixel image: 6 MB)."""
    out = []
    mcus_v, mcus_h = mcus
    for (bh, bw), (v, h) in zip(blocks, sampling):
        if len(blocks) == 1:
            seq = np.arange(bh * bw, dtype=np.int32)
            dummies = 0
        else:
            index = np.full((mcus_v * v, mcus_h * h), -1, np.int32)
            index[:bh, :bw] = np.arange(bh * bw, dtype=np.int32).reshape(bh, bw)
            seq = index.reshape(mcus_v, v, mcus_h, h).transpose(0, 2, 1, 3).ravel()
            seq, dummies = seq[seq >= 0], index.size - bh * bw
        seq.flags.writeable = False
        out.append((seq, dummies))
    return tuple(out)


class _HuffmanArgs:
    """Per-component Huffman codes (dc codes, dc sizes, ac codes, ac sizes) as the native coder's four
    pointer-array arguments (``args``); the arrays live as long as this object."""

    def __init__(self, tables):
        self.arrays = [[t[i] for t in tables] for i in range(4)]
        self.args = [ffi.new(f"const {ctype} *[]", [as_pointer(a, a.dtype) for a in arrays])
                     for ctype, arrays in zip(("uint32_t", "uint8_t", "uint32_t", "uint8_t"), self.arrays)]


class _RdoCoder:
    """Saliency-weighted RDO under jpegli's tables (:mod:`.rdo`). The frame header (JFIF, EXIF, ICC, ...) is
    Pillow's for the options given, the tables jpegli's, the scan ours (native coder) with optimised Huffman
    tables built as libjpeg builds them (progressive output: re-encoded by Pillow). The native core (default)
    quantises the exact DCT itself, starting from the nearest values, for every layout; ``core="jpegli"``
    starts RGB at 4:2:0 from jpegli's own coefficients (with its adaptive quantisation), other layouts from
    the nearest values."""

    def __init__(self, rgb, sal, options, strength=rdo.DEFAULT_STRENGTH, headroom=None,
                 masking=rdo.DEFAULT_MASKING, core=rdo.DEFAULT_CORE):
        self.rgb = np.ascontiguousarray(rgb)
        self.options = dict(options)
        if not self.options.get("progressive") and not self.options.get("progression"):
            self.options["optimize"] = True
        self.dct = _DctCoder(rgb, np.zeros((1, 1), np.float32), 1, self.options)
        self.rgb = self.dct.rgb  # smoothed when the smooth option asks for it: jpegli codes the same pixels
        self.header, self.blocks = self.dct.header, self.dct.blocks
        # The exact DCT is kept for small images; larger ones recompute it in strips of MCU rows for each use
        # (the same values: blocks are independent and strips end on MCU boundaries), so the float DCT never
        # takes more than about RAW_STRIP_BYTES.
        raw_bytes = 4 * 64 * sum(bh * bw for bh, bw in self.blocks)
        self._raw = forward_dct(self.rgb, self.header, self.dct.to_ycbcr) if raw_bytes <= RAW_CACHE_BYTES else None
        self._strip_mcu_rows = max(1, int(RAW_STRIP_BYTES * self.header.mcus()[0] // raw_bytes))
        comps = self.header.components
        if core not in rdo.CORES:
            raise ValueError(f"core must be one of {rdo.CORES}, got {core!r}")
        self.jpegli_core = (core == "jpegli" and len(comps) == 3 and not options.get("keep_rgb")
                            and options.get("subsampling") == 2)
        hmax, vmax = max(c.samp_h for c in comps), max(c.samp_v for c in comps)
        means_of = {}  # (blocks, block size in pixels) -> block means: components of the same layout share them

        def block_means(blocks, comp):
            key = (tuple(blocks), (8 * vmax // comp.samp_v, 8 * hmax // comp.samp_h))
            if key not in means_of:
                means_of[key] = rdo.block_means(sal, *key)
            return means_of[key]

        luma_means = block_means(self.blocks[0], comps[0])
        self.uniform = strength == 0 or float(np.ptp(luma_means)) == 0.0
        self.weights = []
        ranked = {}  # components of the same layout share their block means and so their weights
        for comp, blocks in zip(comps, self.blocks):
            means = block_means(blocks, comp)
            if self.uniform:
                self.weights.append(np.ones(blocks[0] * blocks[1]))
            else:  # each component's blocks ranked among themselves: the same transfer at every sampling
                if id(means) not in ranked:
                    ranked[id(means)] = rdo.rank_weights(means, strength).ravel()
                self.weights.append(ranked[id(means)])
        self.saliency_weights = [w.copy() for w in self.weights]
        if masking:
            variance = [np.empty(bh * bw) for bh, bw in self.blocks]
            for rows, raws in self._raw_strips():
                for v, (r0, r1), r, (_, bw) in zip(variance, rows, raws, self.blocks):
                    v[r0 * bw:r1 * bw] = rdo.block_variance(r.reshape(-1, 64))
            self.weights = [w * rdo.masking_weights(None, masking, variance=v) for w, v in zip(self.weights, variance)]
        self.cell_size = (8 * vmax // comps[0].samp_v, 8 * hmax // comps[0].samp_h)
        self.cell_levels = np.zeros(self.blocks[0], np.uint8)
        self.headroom: float | None
        if self.jpegli_core:
            self.headroom = 0.0 if self.uniform else float(rdo.DEFAULT_HEADROOM if headroom is None else headroom)
        else:
            self.headroom = None if headroom is None else float(headroom)
        self._native = {}
        self._sample = None
        self._header_bytes = None
        self._zero_counts: tuple = (None,)
        self._dc_counts: tuple = (None,)
        self._dc_bits: tuple = (None,)
        self._ratio: tuple = (None, 1.0)
        if len(comps) == 3 and not options.get("keep_rgb"):
            self.component_weights: tuple = rdo.COMPONENT_RGB_WEIGHT
        else:
            self.component_weights = (1.0,) * len(comps)
        self._start = {}
        self._jpegli_sizes = {}
        self._jpegli_files = {}

    def jpegli_size(self, quality):
        """Size of pyjpegli's file at ``quality`` (not Huffman-optimised: 4-8% larger than our re-coding of
        the same coefficients at lambda = 0)."""
        if quality not in self._jpegli_sizes:
            data = self._jpegli_file(quality)
            self._jpegli_sizes[quality] = len(data)
        return self._jpegli_sizes[quality]

    def _jpegli_file(self, quality):
        """pyjpegli's file at ``quality``; the last two are kept (the search usually ends on the one
        :meth:`start` reads)."""
        if quality not in self._jpegli_files:
            rgb3 = self.rgb if self.rgb.ndim == 3 else np.repeat(self.rgb[..., None], 3, 2)
            self._jpegli_files[quality] = rdo.jpegli_encode(rgb3, quality)
            while len(self._jpegli_files) > 2:
                self._jpegli_files.pop(next(iter(self._jpegli_files)))
        return self._jpegli_files[quality]

    def start(self, quality):
        """(coefficients per component (N, 64), tables per component, AC code lengths, frame tables, symbol counts
        of their scan, the part of those counts that no RDO decision changes) at the
        jpegli quality ``quality``; the last one is cached. Native core: (None, tables, lengths, frame, None,
        None): the RDO starts from the nearest values, and the counts come from each pass."""
        if not self.jpegli_core:
            return (None,) + self.native_state(quality) + (None, None)
        if quality not in self._start:
            self._start = {}  # one quality at a time: the previous one's coefficients go first (memory)
            data = self._jpegli_file(quality)
            coefs, tables = rdo.read_coefficients(data)
            coefs = [c[:bh, :bw].reshape(-1, 64) for c, (bh, bw) in zip(coefs, self.blocks)]
            lengths = rdo.ac_code_lengths(data)
            lengths = [lengths[min(i, len(lengths) - 1)] for i in range(len(coefs))]
            frame = np.stack([tables[0], tables[1] if len(tables) > 1 else tables[0]])
            # symbol counts of the start coefficients' scan, and its part that no RDO decision changes (DC
            # differences: the DC is kept; the EOB of each dummy block): a trial's counts are that part plus
            # the AC counts its RDO pass returns
            start_freq = self.dct.scan_frequencies([c.reshape(bh, bw, 64) for c, (bh, bw) in zip(coefs, self.blocks)])
            fixed = start_freq.copy()
            fixed[1] = 0
            comps = self.header.components
            if len(comps) > 1:  # a dummy block (all-zero AC) codes one EOB; one component has none
                mcus_v, mcus_h = self.header.mcus()
                for i, (comp, (bh, bw)) in enumerate(zip(comps, self.blocks)):
                    fixed[1, i, 0x00] = mcus_v * mcus_h * comp.samp_v * comp.samp_h - bh * bw
            self._start = {quality: (coefs, tables, lengths, frame, start_freq, fixed)}
        return self._start[quality]

    # ---- native core: the exact DCT quantised under jpegli's tables by the RDO itself (start = nearest) ----

    def headroom_at(self, quality):
        """The native core's headroom when starting from jpegli quality ``quality``: the one given, else
        :func:`rdo.native_headroom`."""
        return rdo.native_headroom(quality, self.uniform) if self.headroom is None else self.headroom

    def typical_lambda(self, quality):
        """Where the native core's rate control usually settles at jpegli quality ``quality``:
        :func:`rdo.lambda_per_step` x the mean AC step of that quality's luma table."""
        step = float(np.mean(self.native_state(quality)[0][0][rdo.ZIGZAG[1:]]))
        return rdo.lambda_per_step(quality, self.uniform) * step

    def native_state(self, quality):
        """(tables per component, AC code lengths per component, frame tables) of the native core at jpegli
        quality ``quality``. The code lengths are those of the optimal Huffman tables of the nearest values
        (lambda = 0) of the sample blocks, what jpegli's optimised tables are to its coefficients; the last
        quality is kept."""
        if quality not in self._native:
            luma, chroma = rdo.jpegli_tables(quality)
            tables = [luma if c.quant_table == 0 else chroma for c in self.header.components]
            placeholder = [np.ones(256, np.float32)] * len(tables)  # lambda = 0: bit costs play no part
            dc, ac = self._sample_counts(tables, 0.0, placeholder)
            by_table = {ident: rdo.code_lengths(np.ceil(total).astype(np.int64))
                        for ident, total in self.dct.table_sums(ac, 1).items()}
            lengths = [by_table[c.ac_table] for c in self.header.components]
            frame = np.stack([luma, chroma])
            self._native = {quality: (tables, lengths, frame)}
            self._zero_counts = (quality, dc, ac)
        return self._native[quality]

    def sample(self):
        """(per component: (float DCT of the sample blocks (n, 64), their weights, blocks represented by each
        sample block), per component the float DC of every block (blocks_h, blocks_w)). The sample is the
        blocks of every k-th MCU on a sheared lattice (MCU (my, mx) when (mx + s my) % k == 0, s coprime with k
        near 0.38 k: :func:`_lattice_shear`), k such that about SAMPLE_BLOCKS luma blocks are sampled (all of a
        small image): spread over the whole image, it estimates a full pass's AC symbol counts within about 1%
        where whole sampled MCU rows missed by up to 5% (Kodak). Rate control searches on it; made once per
        encode."""
        if self._sample is None:
            comps = self.header.components
            k = int(np.clip(self.blocks[0][0] * self.blocks[0][1] // SAMPLE_BLOCKS, 1, MAX_SAMPLE_STEP))
            shear = _lattice_shear(k)
            masks, layouts = [], {}
            for comp, (bh, bw) in zip(comps, self.blocks):
                v, h = (comp.samp_v, comp.samp_h) if len(comps) > 1 else (1, 1)
                if (bh, bw, v, h) not in layouts:  # Cb and Cr share theirs
                    my, mx = np.arange(bh)[:, None] // v, np.arange(bw)[None, :] // h
                    layouts[(bh, bw, v, h)] = (mx + shear * my) % k == 0
                masks.append(layouts[(bh, bw, v, h)])
            if self._raw is not None:  # the kept DCT: the sampled blocks gathered in one step, no strip copies
                picked = [[r.reshape(-1, 64)[np.flatnonzero(m)]] for r, m in zip(self._raw, masks)]
                dc = [np.ascontiguousarray(r[..., 0]) for r in self._raw]
            else:
                picked = [[] for _ in comps]
                dc = [np.empty((bh, bw), np.float32) for bh, bw in self.blocks]
                for rows, raws in self._raw_strips():
                    for i, ((r0, r1), r) in enumerate(zip(rows, raws)):
                        picked[i].append(r[masks[i][r0:r1]])
                        dc[i][r0:r1] = r[..., 0]
            out = []
            for (bh, bw), p, w, m in zip(self.blocks, picked, self.weights, masks):
                raw = np.ascontiguousarray((p[0] if len(p) == 1 else np.concatenate(p)).reshape(-1, 64),
                                           dtype=np.float32)
                out.append((raw, np.ascontiguousarray(w.reshape(bh, bw)[m]), bh * bw / max(1, raw.shape[0])))
            self._sample = (out, dc)
        return self._sample

    def calibrate(self, quality):
        """Correct the sample's luma AC counts at ``quality`` by the ratio of the whole image's candidates
        (coefficients whose nearest value is nonzero: one compare per coefficient) to the sample's, scaled: a
        ratio estimator. On upscaled Kodak images (1024x768, 1080p) it took the sample's luma symbol counts
        from up to 3% off to within 0.2%. Images whose DCT is not kept (above about 4 megapixels, with a large
        sample) are not corrected."""
        luma_table = self.native_state(quality)[0][0]
        if self._ratio[0] is luma_table:
            return
        ratio = 1.0
        if self._raw is not None:
            table = np.ascontiguousarray(luma_table, np.uint16)
            raw = np.ascontiguousarray(self._raw[0], np.float32).reshape(-1, 64)
            sample_raw, _, scale = self.sample()[0][0]
            full = lib.semjpeg_count_candidates(as_pointer(raw, np.float32), raw.shape[0], as_pointer(table, np.uint16))
            part = lib.semjpeg_count_candidates(as_pointer(sample_raw, np.float32), sample_raw.shape[0],
                                                as_pointer(table, np.uint16))
            _check_native(full, "candidate count")
            _check_native(part, "candidate count")
            if full > 0 and part > 0:
                ratio = float(full) / (part * scale)
        self._ratio = (luma_table, ratio)

    def _sample_counts(self, tables, lam, lengths):
        """(DC, AC) symbol counts (component x 257, float) at ``tables`` and ``lam``: the DC (and dummy blocks)
        of the whole image, the AC of the sample blocks scaled to the whole image."""
        sample, dc_raw = self.sample()
        ac = np.zeros((len(sample), 257))
        for i, ((raw, w, scale), t, ln, cw) in enumerate(zip(sample, tables, lengths, self.component_weights)):
            counts = np.zeros(257, np.int64)
            rdo.optimise_component(raw, None, t, w, lam, ln, cw, ac_freq=counts, out_values=False)
            ac[i] = counts * scale
        if self._ratio[0] is tables[0]:  # calibrated at these tables (the cached arrays of one quality)
            ac[0, 1:256] *= self._ratio[1]  # every luma symbol but the EOB (one per block either way)
        key = _dc_steps(tables)
        if self._dc_counts[0] != key:
            self._dc_counts = (key, self._dc_frequencies([_nearest_dc(d, t) for d, t in zip(dc_raw, tables)]))
        fixed = self._dc_counts[1]
        return fixed[0].astype(np.float64), ac + fixed[1]

    def estimate(self, quality, lam):
        """Estimated size in bytes of the file at jpegli quality ``quality`` and ``lam`` from the sample: the
        frame's header, plus the scaled symbol counts coded with the optimal tables for them, plus the
        expected stuffed bytes (one per 0xFF byte of the entropy-coded data, 1/256 of it)."""
        tables, lengths, frame = self.native_state(quality)
        if lam == 0 and self._zero_counts[0] == quality:
            dc, ac = self._zero_counts[1:]
        else:
            dc, ac = self._sample_counts(tables, lam, lengths)
        comps = self.header.components
        dc_key = _dc_steps(tables)
        if self._dc_bits[0] != dc_key:  # the DC part depends on the DC steps only
            self._dc_bits = (dc_key, self._table_bits(0, dc))
        ac_bits, ac_symbols = self._table_bits(1, ac)
        bits, symbols = self._dc_bits[1][0] + ac_bits, self._dc_bits[1][1] + ac_symbols
        if self._header_bytes is None:  # the frame with one-symbol tables; each further symbol: one DHT byte
            self._header_bytes = len(self.dct.assemble_optimised(b"", frame, {
                (cls, i): ([0] * 15 + [1], bytes(1)) for cls in (0, 1)
                for i in {(c.dc_table, c.ac_table)[cls] for c in comps}}))
        return self._header_bytes + symbols + bits / 8 * (1 + 1 / 256)

    def _table_bits(self, cls, counts):
        """(bits, DHT symbols beyond one per table) of the class ``cls`` (0: DC, 1: AC) symbol ``counts``
        (component x 257) coded with the optimal table of each table id."""
        bits, symbols = 0.0, 0
        for total in self.dct.table_sums(counts, cls).values():
            used = np.ceil(total[:256]).astype(np.int64)
            if not used.any():
                continue
            code = rdo.code_lengths(used, ac=False)
            extra = _EXTRA_BITS[cls]
            bits += float(np.dot(total[:256], code + np.where(code > 0, extra, 0)))
            symbols += int(np.count_nonzero(used)) - 1
        return bits, symbols

    def _scan_order(self):
        """Per component (the indices of its blocks in the scan's order, its dummy blocks): MCU by MCU, each
        MCU's samp_v x samp_h blocks in raster order (one component: raster order); cached by layout."""
        return _scan_order(tuple(map(tuple, self.blocks)), tuple((c.samp_v, c.samp_h) for c in self.header.components),
                           tuple(self.header.mcus()))

    def _dc_frequencies(self, dc_values):
        """(DC, AC) x component x 257 counts of the DC differences of ``dc_values`` (per component
        (blocks_h, blocks_w)) in the scan's order, and of the dummy blocks (a zero difference and an EOB each):
        what no RDO decision changes."""
        comps = self.header.components
        freq = np.zeros((2, len(comps), 257), np.int64)
        for i, (dc, (order, dummies)) in enumerate(zip(dc_values, self._scan_order())):
            seq = np.asarray(dc).ravel()[order]
            freq[0, i, 0] += dummies  # a dummy block repeats the DC before it and codes one EOB
            freq[1, i, 0x00] += dummies
            diffs = np.diff(seq.astype(np.int32), prepend=0)
            freq[0, i, :12] += np.bincount(np.frexp(diffs)[1], minlength=12)[:12]
        return freq

    def coefficients(self, quality, lam):
        """Per component the (blocks_h, blocks_w, 64) coefficients written at jpegli quality and lambda."""
        return self._coefficients(quality, lam)[0]

    def _coefficients(self, quality, lam):
        """(:meth:`coefficients`, the symbol counts of their scan: (DC, AC) x component x 257)."""
        coefs, _, _, _, start_freq, fixed = self.start(quality)
        if lam == 0 and coefs is not None:
            return [c.reshape(bh, bw, 64) for c, (bh, bw) in zip(coefs, self.blocks)], start_freq
        out = [np.empty((bh, bw, 64), np.int16) for bh, bw in self.blocks]
        ac = np.zeros((len(out), 257), np.int64)
        for rows, raws in self._raw_strips():  # written in place into the whole-image arrays
            self._strip_coefficients(quality, lam, rows, raws, ac,
                                     outs=[o[r0:r1].reshape(-1, 64) for o, (r0, r1) in zip(out, rows)])
        freq = fixed.copy() if fixed is not None else self._native_fixed(quality, [o[..., 0] for o in out])
        freq[1] += ac
        return out, freq

    def _native_fixed(self, quality, dc_values):
        """The native core's DC and dummy-block counts at ``quality``: those the rate control's estimates
        made (the same nearest DC values) when it has them, else counted from ``dc_values``."""
        key = _dc_steps(self.native_state(quality)[0])
        if self._dc_counts[0] == key:
            return self._dc_counts[1].copy()
        return self._dc_frequencies(dc_values)

    def _strip_coefficients(self, quality, lam, rows, raws, ac_counts=None, outs=None):
        """The RDO decisions of one strip (:meth:`_raw_strips`), per component (blocks, 64) int16 (written into
        ``outs`` when given); the AC symbol counts of the coded blocks are added to ``ac_counts[component]``
        when given."""
        coefs, tables, lengths = self.start(quality)[:3]
        coefs = coefs or [None] * len(tables)  # native core: start from the nearest values
        outs = outs or [None] * len(tables)
        return [rdo.optimise_component(r.reshape(-1, 64), None if c is None else c[r0 * bw:r1 * bw], t,
                                       w[r0 * bw:r1 * bw], lam, ln, cw,
                                       ac_freq=None if ac_counts is None else ac_counts[i], out=o)
                for i, ((r0, r1), r, c, t, w, ln, cw, (_, bw), o) in enumerate(zip(
                    rows, raws, coefs, tables, self.weights, lengths, self.component_weights, self.blocks, outs))]

    def _encode_streamed(self, quality, lam):
        """:meth:`encode` without whole-image arrays of the trial's coefficients (large images): the RDO runs
        twice per strip, first counting symbols for the Huffman tables, then (the same decisions) feeding the
        native scan writer. The same bytes as the one-pass route."""
        tables, _, frame, _, fixed = self.start(quality)[1:]
        ac = np.zeros((len(tables), 257), np.int64)
        dc_values = [np.empty((bh, bw), np.int32) for bh, bw in self.blocks] if fixed is None else None
        for rows, raws in self._raw_strips():
            self._strip_coefficients(quality, lam, rows, raws, ac)
            if dc_values is not None:  # the native core's DC: the nearest value, as the RDO pass writes it
                for d, (r0, r1), r, t in zip(dc_values, rows, raws, tables):
                    d[r0:r1] = _nearest_dc(r[..., 0], t)
        freq = fixed.copy() if fixed is not None else self._dc_frequencies(dc_values)
        freq[1] += ac
        huffman, codes = self.dct.optimal_huffman(freq)
        dct = self.dct
        comps = self.header.components
        luma_rows = comps[0].samp_v if len(comps) > 1 else 1
        mcus_v = self.header.mcus()[0] if len(comps) > 1 else self.blocks[0][0]
        writer = lib.semjpeg_scan_writer_open(len(comps), *dct._block_args, *dct._sampling_args, *codes.args,
                                              self.header.mcus()[1], as_pointer(dct._scan_buffer, np.uint8),
                                              dct.capacity)
        if writer == ffi.NULL:
            raise MemoryError("native scan writer: out of memory")
        try:
            for rows, raws in self._raw_strips():
                strip = self._strip_coefficients(quality, lam, rows, raws)
                first = rows[0][0] // luma_rows
                n_rows = min(self._strip_mcu_rows, mcus_v - first)
                rc = lib.semjpeg_scan_writer_rows(writer, ffi.new("const int16_t *[]", [as_pointer(c, np.int16)
                                                                                       for c in strip]), first, n_rows)
                _check_native(rc, "scan writer")
        finally:
            length = lib.semjpeg_scan_writer_close(writer)
        _check_native(length, "entropy coder")
        return dct.assemble_optimised(dct._scan_buffer[:length].tobytes(), frame, huffman)

    def _raw_strips(self):
        """(block rows (start, stop) of each component, their float DCT (rows, blocks_w, 64) per component) for
        strips of whole MCU rows: the kept DCT in one piece, else each strip transformed now."""
        if self._raw is not None:
            yield [(0, bh) for bh, _ in self.blocks], self._raw
            return
        comps = self.header.components
        per_row = [c.samp_v if len(comps) > 1 else 1 for c in comps]
        mcu_h = 8 * max(per_row)  # image rows per MCU row
        for y0 in range(0, self.header.height, mcu_h * self._strip_mcu_rows):
            y1 = min(self.header.height, y0 + mcu_h * self._strip_mcu_rows)
            raws = forward_dct(self.rgb[y0:y1], self.header.with_size(y1 - y0, self.header.width), self.dct.to_ycbcr)
            first = [y0 // mcu_h * n for n in per_row]
            yield [(f, f + r.shape[0]) for f, r in zip(first, raws)], raws

    def encode(self, quality, lam):
        if self._raw is None and lam != 0 and self.dct.optimize and not self.dct.progressive:
            data = self._encode_streamed(quality, lam)
            data.jpegli_quality, data.lam = quality, lam
            return data
        (coefs, freq), frame = self._coefficients(quality, lam), self.start(quality)[3]
        if self.dct.progressive or not self.dct.optimize:
            data = self.dct.encode_coefficients(coefs, frame)
        else:  # native optimised Huffman coding: the same bytes as libjpeg's re-coding
            data = self.dct.encode_coefficients_optimised(coefs, frame, freq)
        data.jpegli_quality, data.lam = quality, lam
        return data


TRIM_PIXELS = 3 << 22  # images from 4 megapixels (RGB) on return freed heap memory to the system


def _release_freed_memory():
    """Give the C heap's freed memory back to the system (glibc ``malloc_trim``; nothing elsewhere). Pillow's
    whole-image buffers are freed into the heap, and the later whole-image numpy arrays are new mappings, so
    without this the freed heap stays resident and adds to the peak (8000x8000: about 260 MB)."""
    global _MALLOC_TRIM
    if _MALLOC_TRIM is None:
        try:
            import ctypes
            _MALLOC_TRIM = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _MALLOC_TRIM = False
    if _MALLOC_TRIM:
        _MALLOC_TRIM(0)


_MALLOC_TRIM: Any = None  # libc's malloc_trim, False where there is none


def _check_native(rc, what):
    """Turn a negative SEMJPEG_ error code of a native call into an exception."""
    if rc >= 0:
        return
    if rc == lib.SEMJPEG_NO_MEMORY:
        raise MemoryError(f"native {what} ran out of memory")
    reasons = {lib.SEMJPEG_BAD_ARGUMENT: "refused its arguments",
               lib.SEMJPEG_NO_ROOM: "ran out of output space",
               lib.SEMJPEG_NO_SYMBOL: "met a symbol missing from the Huffman table",
               lib.SEMJPEG_OUT_OF_RANGE: "met a coefficient out of the baseline range"}
    raise RuntimeError(f"native {what} {reasons.get(rc, f'failed (code {rc})')}")


def _temp_dir():
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


def forward_dct(rgb, header, to_ycbcr=True):
    """The DCT of every block of each component, float32 (blocks_h, blocks_w, 64) in natural order, as the
    frame ``header`` lays them out (native: edge padding, JFIF YCbCr, box downsampling, 8x8 DCT-II)."""
    comps = header.components
    channels = 1 if rgb.ndim == 2 else rgb.shape[2]
    if channels != len(comps) or rgb.shape[:2] != (header.height, header.width):
        raise ValueError(f"image {rgb.shape} does not match the frame header")
    coefs = [np.empty((bh, bw, 64), np.float32) for bh, bw in header.blocks()]
    rc = lib.semjpeg_forward_dct(
        as_pointer(np.ascontiguousarray(rgb), np.uint8), rgb.shape[0], rgb.shape[1], channels, int(to_ycbcr),
        ffi.new("int[]", [c.samp_h for c in comps]), ffi.new("int[]", [c.samp_v for c in comps]),
        ffi.new("int[]", [c.shape[0] for c in coefs]), ffi.new("int[]", [c.shape[1] for c in coefs]),
        ffi.new("float *[]", [as_pointer(c, np.float32) for c in coefs]))
    _check_native(rc, "forward DCT")
    return coefs


def _smoothed(rgb, factor):
    """libjpeg's input smoothing (jcsample.c): each pixel becomes (1 - 8 SF) itself + SF each of its 8
    neighbours, SF = factor / 1024, edges repeated; applied to every channel before the transform. ``factor``
    was checked by :func:`_check_options` (every mode)."""
    sf = factor / 1024.0
    padded = np.pad(rgb.astype(np.float32), [(1, 1), (1, 1)] + [(0, 0)] * (rgb.ndim - 2), mode="edge")
    h, w = rgb.shape[:2]
    neighbours = sum(padded[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)) - padded[1:-1, 1:-1]
    out = (1 - 8 * sf) * padded[1:-1, 1:-1] + sf * neighbours
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _optimize_huffman(data):
    """Losslessly rewrite a baseline stream with optimised Huffman tables (jpeglib). libjpeg writes its own
    JFIF segment and also copies the saved one, so the copy is dropped."""
    import jpeglib
    with tempfile.TemporaryDirectory(dir=_temp_dir()) as tmp:
        src, dst = os.path.join(tmp, "in.jpg"), os.path.join(tmp, "out.jpg")
        with open(src, "wb") as f:
            f.write(data)
        jpeg = jpeglib.read_dct(src)
        jpeg.load()
        jpeg.write_dct(dst, flags=["+OPTIMIZE_CODING"])
        with open(dst, "rb") as f:
            out = f.read()
    return jpeg_stream.drop_duplicate_segments(out)


def _reencode_progressive(data, frame, options):
    """Progressive output: jpeglib cannot write progressive scans from coefficients, so the coefficient-exact
    baseline is decoded and re-encoded by Pillow with the same tables and options. This costs one rounding
    step (decoded pixels -> DCT), far below the quantisation error of the levels."""
    with Image.open(io.BytesIO(data)) as im:
        array = np.asarray(im)
    return _pillow_bytes(array, frame, options)


def _match_size(coder, qualities, final_quality, target, tolerance):
    """Find the shared quality offset whose file is within ``tolerance`` of ``target``: step outwards from 0
    until the target is bracketed, then Illinois regula falsi on log(size) (bisection's guarantee, usually
    2-4 encodes instead of 6-10). If the target falls inside a step of the size (integer tables), the "dct"
    coder's dead zone is searched the same way at the offset above the step."""
    lo = 1.0 - max(np.max(qualities), final_quality)   # every quality clipped to 1
    hi = 100.0 - min(np.min(qualities), final_quality)  # every quality clipped to 100
    best: Any = None  # the closest file so far (_Encoded)
    iterations = 0

    def error(shift, deadzone=DEADZONE):
        """log(size / target) of the file made with ``shift`` (and ``deadzone``); keeps the closest file."""
        nonlocal best, iterations
        iterations += 1
        data = (coder.encode(qualities, final_quality, shift) if deadzone == DEADZONE
                else coder.encode(qualities, final_quality, shift, deadzone))
        if best is None or abs(len(data) - target) < abs(len(best) - target):
            best = data
        return np.log(len(data) / target)

    def met():
        return abs(len(best) - target) <= tolerance * target

    a, fa = 0.0, error(0.0)
    step = -10.0 if fa > 0 else 10.0
    b, fb = a, fa
    while not met() and np.sign(fb) == np.sign(fa) and lo < b < hi:  # bracket the target
        a, fa = b, fb
        b = float(np.clip(b + step, lo, hi))
        fb = error(b)
        step *= 2
    if np.sign(fb) != np.sign(fa):
        a, fa, b, fb = _illinois(error, a, fa, b, fb, met, 1e-3)
        if not met() and isinstance(coder, _DctCoder):  # inside one step of the integer tables
            above = a if fa > 0 else b
            wide = error(above, 1.0)
            if wide < 0:
                # (the error at `above` is recomputed: Illinois may have halved the kept value)
                _illinois(lambda d: error(above, d), DEADZONE, error(above, DEADZONE), 1.0, wide, met, 1e-4)
    if not met():
        warnings.warn(f"size target {target} B not met within {tolerance:.1%}: closest is {len(best)} B "
                      f"({len(best) / target - 1:+.2%}) at quality offset {best.shift:+.2f}, dead zone "
                      f"{best.deadzone:.3f}", RateControlWarning,
                      stacklevel=3)
    return best, iterations


def _jpegli_slope(q):
    """Typical d log(size) / d quality of jpegli around quality q (measured on 12 Kodak and 8 ImageNet images:
    about 0.02 at 50-65, 0.03 at 80, 0.05 at 90), for the first steps of the quality search."""
    return float(np.interp(q, (0, 65, 80, 90, 100), (0.02, 0.018, 0.028, 0.05, 0.1)))


def _jpegli_quality_for(sizes, measure, target, guess=85, enough=None):
    """The smallest integer jpegli quality whose size is at least ``target`` bytes (100 if none is; the size
    grows with the quality). ``sizes``: quality -> size measured so far (the coder's pyjpegli file sizes, or
    the native core's estimates); ``measure(q)`` measures quality q into it. Every measured size brackets the
    answer; the next
    quality tried is where log(size) crosses log(target), interpolated between the bracket's ends or
    extrapolated from the slope of the two measured sizes nearest the target, rounded towards the unmeasured
    side, so the search usually needs the two qualities around the answer and one more. The first search of an
    encode starts at ``guess``. ``enough(lo, hi)``: stop as soon as it is true of the bracket (the answer is
    in lo + 1 .. hi) and return the bracket instead."""
    log_t = np.log(target)
    while True:
        below = [q for q, s in sizes.items() if s < target]
        above = [q for q, s in sizes.items() if s >= target]
        lo = max(below, default=0)     # quality 0: a virtual size below every target
        hi = min(above, default=101)   # quality 101: a virtual size above every target
        if hi - lo <= 1:
            return int(min(hi, 100)) if enough is None else (lo, hi)
        if enough is not None and enough(lo, hi):
            return lo, hi
        if lo and hi <= 100:  # interpolate log(size) between the bracket's ends
            a, b = np.log(sizes[lo]), np.log(sizes[hi])
            x = lo + (log_t - a) / (b - a) * (hi - lo) if b > a else (lo + hi) / 2
            q = int(np.ceil(x)) if x - lo > hi - x else int(np.floor(x))
        elif not sizes:
            q = int(guess)
        else:  # one side only: extrapolate with the slope of the two measured sizes nearest the target
            near = sorted(sizes, key=lambda k: abs(np.log(sizes[k]) - log_t))[:2]
            slope = _jpegli_slope(near[0])
            if len(near) == 2 and sizes[near[0]] != sizes[near[1]]:
                slope = max((np.log(sizes[near[0]]) - np.log(sizes[near[1]])) / (near[0] - near[1]), 1e-3)
            x = near[0] + (log_t - np.log(sizes[near[0]])) / slope
            q = int(np.ceil(x)) if lo else int(np.floor(x))  # land just on the other side of the crossing
        measure(int(np.clip(q, lo + 1, hi - 1)))


def _match_size_rdo(coder, target, tolerance, guess=85):
    """Size control of "rdo" mode: start from the jpegli quality that meets ``target`` plus the coder's
    headroom, then bisect lambda (Illinois on log size vs log lambda) until the file is within ``tolerance``.
    When lambda = 0 is already under the target, the next jpegli qualities are tried."""
    if coder.headroom:  # less headroom at high quality, where the RDO's model loses more against jpegli's
        # the headroom depends on the quality q that meets the target only between 61 and 79: the search for q
        # stops once q is known to be >= 80 or <= 60 (the same headroom as with q itself)
        lo, hi = _jpegli_quality_for(coder._jpegli_sizes, coder.jpegli_size, target, guess,
                                     enough=lambda lo, hi: lo >= 79 or hi <= 60)
        quality = 100 if lo >= 79 else 1 if hi <= 60 else int(min(hi, 100))
        headroom = coder.headroom * float(np.clip((100 - quality) / 40.0, 0.5, 1.0))
        quality = _jpegli_quality_for(coder._jpegli_sizes, coder.jpegli_size, target * (1.0 + headroom))
    else:
        quality = _jpegli_quality_for(coder._jpegli_sizes, coder.jpegli_size, target, guess)
    best: Any = None  # the closest file so far (_Encoded)
    iterations = 0

    files: dict = {}  # (quality, lambda) -> file: the lambda = 0 file is asked for twice

    def error(lam, q):
        nonlocal best, iterations
        iterations += 1
        if (q, lam) not in files:
            files.clear()
            files[(q, lam)] = coder.encode(q, lam)
        data = files[(q, lam)]
        if best is None or abs(len(data) - target) < abs(len(best) - target):
            best = data
        return np.log(len(data) / target)

    def met():
        return abs(len(best) - target) <= tolerance * target

    # with a map, start where our own re-coding (optimised Huffman tables) is at least MIN_HEADROOM above the
    # target, so that there is something to reallocate; a uniform map only needs to reach the target
    floor = float(np.log1p(rdo.MIN_HEADROOM)) if coder.headroom else 0.0
    f0 = error(0.0, quality)
    while (f0 < floor if floor else f0 < 0 and not met()) and quality < 100:
        quality += 1
        f0 = error(0.0, quality)
    if floor:
        best = None  # the files below the floor are not candidates
        f0 = error(0.0, quality)
    if f0 > 0 and not met():
        a, fa = np.log(1e-3), f0  # log lambda; lambda = 1e-3 changes (almost) nothing
        b = np.log(4.0)
        fb = error(np.exp(b), quality)
        while fb > 0 and not met() and b < np.log(1e7):
            a, fa = b, fb
            b += np.log(8.0)
            fb = error(np.exp(b), quality)
        if fb < 0 and not met():
            _illinois(lambda x: error(np.exp(x), quality), a, fa, b, fb, met, 1e-4)
    if not met():
        warnings.warn(f"size target {target} B not met within {tolerance:.1%}: closest is {len(best)} B "
                      f"({len(best) / target - 1:+.2%}) from jpegli quality {best.jpegli_quality} at lambda "
                      f"{best.lam:.3g}", RateControlWarning, stacklevel=3)
    return best, iterations


def _fixed_quality(coder, quality):
    """The one-pass encode of ``rate_control=False`` at Pillow-like ``quality``: jpegli's tables at the
    quality the rate control typically starts from for a Pillow-Q-sized target (quality + (100 - quality) / 4,
    lower with a uniform map: :data:`rdo.UNIFORM_START_OFFSET`) and the typical lambda for them
    (:func:`rdo.lambda_per_step` x their mean AC luma step)."""
    guess = quality + (100 - quality) / 4
    if coder.uniform:
        guess -= float(np.interp(guess, *rdo.UNIFORM_START_OFFSET))
    q = int(np.clip(round(guess), 1, 100))
    return coder.encode(q, coder.typical_lambda(q))


def _match_size_native(coder, target, tolerance, guess=85):
    """Size control of the native core. On the sample blocks (:meth:`_RdoCoder.estimate`, a fraction of a
    full pass each): the lowest jpegli quality whose nearest values (lambda = 0) are estimated at
    (1 + headroom) x the target, then the lambda at which the estimate meets the target (:func:`_solve_log`:
    secant steps on log size vs log lambda from the typical lambda, then Illinois). Then full encodes: each
    file's size over the estimate at its lambda corrects the estimates, and lambda is solved again, until the
    file is within ``tolerance`` (one or two full encodes, usually); if that has not converged after four,
    Illinois on full encodes."""
    sizes: dict = {}  # jpegli quality -> estimated size at lambda = 0

    def zero_size(q):
        sizes[q] = coder.estimate(q, 0.0)

    headroom = coder.headroom_at(guess)
    quality = _jpegli_quality_for(sizes, zero_size, target * (1.0 + headroom), guess)
    if coder.headroom_at(quality) != headroom:  # the headroom at the quality found (sizes measured are reused)
        quality = _jpegli_quality_for(sizes, zero_size, target * (1.0 + coder.headroom_at(quality)), quality)
    best: Any = None
    iterations = 0
    full: dict = {}  # log lambda -> log(size / target) of full encodes

    def encode_full(lam):
        nonlocal best, iterations
        iterations += 1
        data = coder.encode(quality, lam)
        if best is None or abs(len(data) - target) < abs(len(best) - target):
            best = data
        full[np.log(max(lam, 1e-3))] = np.log(len(data) / target)
        return len(data)

    def full_error(x):
        size = encode_full(float(np.exp(x)))
        return np.log(size / target)

    def met():
        return best is not None and abs(len(best) - target) <= tolerance * target

    estimates: dict = {}

    def estimate(lam):
        if (quality, lam) not in estimates:
            estimates[(quality, lam)] = coder.estimate(quality, lam)
        return estimates[(quality, lam)]

    correction = 1.0
    coder.calibrate(quality)
    x = np.log(coder.typical_lambda(quality))  # where lambda usually ends (OSIE)
    for _ in range(4):
        if sizes.get(quality, np.inf) * correction <= target:  # no RDO is (estimated) under the target
            if quality >= 100:
                encode_full(0.0)
                break
            quality += 1
            zero_size(quality)
            coder.calibrate(quality)
            full.clear()  # full encodes at another quality do not bracket this one's lambda
            continue
        x = _solve_log(lambda x, c=correction: float(np.log(estimate(float(np.exp(x))) * c / target)), x, 0.004)
        lam = float(np.exp(x))
        size = encode_full(lam)
        if met():
            break
        correction = size / estimate(lam)
    if not met():
        below = [x for x, v in full.items() if v < 0]
        above = [x for x, v in full.items() if v > 0]
        if below and above:  # Illinois on full encodes between the closest lambdas on each side
            a, b = max(above), min(below)
            _illinois(full_error, a, full[a], b, full[b], met, 1e-4)
    if not met():
        warnings.warn(f"size target {target} B not met within {tolerance:.1%}: closest is {len(best)} B "
                      f"({len(best) / target - 1:+.2%}) at jpegli quality {best.jpegli_quality}, lambda "
                      f"{best.lam:.3g}", RateControlWarning, stacklevel=3)
    return best, iterations


def _solve_log(f, x, tol, slope=-0.11):
    """x with |f(x)| <= tol for f decreasing (log size vs log lambda), from the guess ``x``: secant steps
    (the first with ``slope``, -0.11 the median on OSIE 1601-1700; each at most 1.5 in x) until the root is
    bracketed, then Illinois. Returns the x of the smallest |f| seen."""
    seen = {x: f(x)}
    for _ in range(30):
        best = min(seen, key=lambda k: abs(seen[k]))
        if abs(seen[best]) <= tol:
            return best
        above = [k for k, v in seen.items() if v > 0]
        below = [k for k, v in seen.items() if v < 0]
        if above and below:
            a, b = max(above), min(below)
            a, fa, b, fb = _illinois(lambda k: seen.setdefault(k, f(k)), a, seen[a], b, seen[b],
                                     lambda: min(abs(v) for v in seen.values()) <= tol, 1e-3)
            return min(seen, key=lambda k: abs(seen[k]))
        near = sorted(seen, key=lambda k: abs(seen[k]))[:2]
        s = slope
        if len(near) == 2 and seen[near[0]] != seen[near[1]]:
            s = min((seen[near[0]] - seen[near[1]]) / (near[0] - near[1]), -0.02)
        x = near[0] + float(np.clip(-seen[near[0]] / s, -1.5, 1.5))
        if not np.log(1e-4) < x < np.log(1e8):
            break
        seen[x] = f(x)
    return min(seen, key=lambda k: abs(seen[k]))


def _illinois(f, a, fa, b, fb, done, xtol):
    """Illinois regula falsi for f(x) = 0 on a bracket [a, b] (f(a), f(b) of opposite signs); returns the
    last bracket. Stops when ``done()`` or the bracket is narrower than ``xtol``."""
    for _ in range(40):
        if done() or abs(b - a) < xtol:
            break
        x = b - fb * (b - a) / (fb - fa)
        fx = f(x)
        if np.sign(fx) != np.sign(fb):
            a, fa = b, fb
        else:
            fa /= 2  # Illinois: keep the stale end from slowing convergence
        b, fb = x, fx
    return a, fa, b, fb


def _write(data, fp):
    """Write to a path atomically (temp file + rename; a link is written through and a replaced file keeps its
    permissions: :func:`semantic_jpeg._cliutil.write_file`) or to a binary file object."""
    if fp is None:
        return
    if isinstance(fp, (str, os.PathLike)):
        write_file(fp, data, overwrite=True)
    elif hasattr(fp, "write"):
        fp.write(data)
    else:
        raise TypeError(f"fp must be None, a path or a binary file object, got {type(fp).__name__}")
