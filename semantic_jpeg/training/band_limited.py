"""Band-limited FFT convolution (Dziedzic et al., "Band-limited Training and Inference for CNNs", ICML 2019).

``BandLimitedConv2d`` is a drop-in for ``nn.Conv2d`` that convolves in the Fourier domain with both spectra
masked to the same low-frequency band (Dziedzic, dissertation, U. Chicago 2019, sec. 2.2.1, eq. 1-2):

    x *_c w = F^-1{ (F_x . M_c) . conj(F_w . M_c) }        (cross-correlation, as nn.Conv2d computes)

``compress_rate`` is the fraction of the half-spectrum (``rfft2``) coefficients discarded; the kept band is
made of the lowest L-shaped shells (Chebyshev distance to the DC corner, Figure 2.2), symmetric in the
self-conjugate columns so the masked spectrum stays the spectrum of a real signal. Only the kept
coefficients are ever multiplied and stored: the compressed input and filter spectra are saved in forward
and reused in backward (map reuse, sec 2.2.2), and the output gradient is band-limited with the same mask,
which makes the backward pass the exact gradient of the band-limited forward.

The FFT size is the padded input size: the forward product is a circular correlation whose valid part has
no wrap-around, and the two backward products (full convolution for the input gradient, correlation for the
filter gradient) fit in the same size, so one set of spectra serves all three products. The transforms are
separable and pruned to the band: along the width, a real matmul with the DFT columns of the kept frequencies
(and back, straight to the wanted output columns); along the height, an FFT over the kept columns, a chunk
of maps at a time. No full spectrum is ever materialised.

The hot spot, the complex product summed over a channel axis, runs on one of three backends:
``"torch"`` (plain complex ``einsum``, the reference), ``"native"`` (C kernel ``semjpeg_bl_cmac_f32`` from
``semantic_jpeg.native``: Gauss's 3-multiplication product fused with the reduction, CPU float32; CUDA
kernel ``band_limited_cuda.cu`` compiled on first use for CUDA float32 tensors), ``"auto"`` (native where it
applies, torch otherwise, e.g. float64).
"""
from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.autograd.function import once_differentiable
from torch.nn import functional as F

BACKENDS = ("auto", "torch", "native")


# ----------------------------------------------------------------------------------------------- band mask
@functools.lru_cache(maxsize=256)
def band_indices(fft_h: int, fft_w: int, compress_rate: float) -> np.ndarray:
    """Flat indices (ascending) of the kept coefficients of an ``rfft2`` spectrum of an ``fft_h x fft_w`` map.

    Coefficients are ranked by the Chebyshev distance of their normalised frequency to the DC corner
    (the L-shaped shells of Figure 2.2), then by L1 distance; the ``round((1 - compress_rate) * total)``
    lowest are kept. Conjugate pairs in the self-conjugate columns (kx = 0 and, for even ``fft_w``,
    kx = fft_w / 2) are kept or dropped together, so the count can exceed the target by one.
    """
    _check_rate(compress_rate)
    half_w = fft_w // 2 + 1
    ky = np.arange(fft_h)
    ky_abs = np.minimum(ky, fft_h - ky)[:, None] * np.ones((1, half_w), dtype=np.int64)
    kx = np.arange(half_w)[None, :] * np.ones((fft_h, 1), dtype=np.int64)
    fy, fx = ky_abs / fft_h, kx / fft_w
    chebyshev, manhattan = np.maximum(fy, fx).ravel(), (fy + fx).ravel()
    # lexsort: last key is primary. Conjugate partners share all keys but the flat index, so they sit together.
    order = np.lexsort((np.arange(fft_h * half_w), ky_abs.ravel(), manhattan, chebyshev))
    total = fft_h * half_w
    target = (1.0 - compress_rate) * total
    n_keep = max(1, int(round(target)))
    if n_keep < total:
        last = order[n_keep - 1]
        row, col = divmod(int(last), half_w)
        self_conjugate_col = col == 0 or (fft_w % 2 == 0 and col == fft_w // 2)
        partner = ((-row) % fft_h) * half_w + col
        if self_conjugate_col and partner != last and partner not in set(order[:n_keep].tolist()):
            # the cut splits a conjugate pair: take it whole or drop its first half, whichever is nearer
            n_keep = n_keep + 1 if n_keep == 1 or n_keep - target <= 0 else n_keep - 1
    return np.sort(order[:n_keep]).astype(np.int64)


def _check_rate(compress_rate) -> None:
    if not isinstance(compress_rate, (int, float)) or isinstance(compress_rate, bool):
        raise TypeError(f"compress_rate must be a number in [0, 1), got {type(compress_rate).__name__}")
    if not (0.0 <= float(compress_rate) < 1.0):
        raise ValueError(f"compress_rate must be in [0, 1) (fraction of coefficients discarded), got {compress_rate}")


# ----------------------------------------------------------------------------------------------- geometry
@dataclass(frozen=True)
class _Plan:
    """Sizes of one call and the kept band.

    ``index`` addresses the kept coefficients in the pruned (fft_h, cols) grid, where ``cols`` is the
    highest kept rfft column + 1: columns above it are never transformed. ``phase`` is the spectrum of the
    (top, left) zero padding (a shift), applied to the kept coefficients instead of padding the input.
    """

    pad_top_left: tuple[int, int]
    in_hw: tuple[int, int]
    fft_hw: tuple[int, int]
    full_out_hw: tuple[int, int]
    kernel_hw: tuple[int, int]
    stride: tuple[int, int]
    cols: int
    index: torch.Tensor
    phase: torch.Tensor
    matrices: dict = field(default_factory=dict, compare=False, hash=False, repr=False)  # derived, cached

    @property
    def n_kept(self) -> int:
        return int(self.index.numel())


@functools.lru_cache(maxsize=256)
def _make_plan(in_hw, kernel_hw, stride, padding, compress_rate, device) -> _Plan:
    """The plan of a geometry, cached: the band, its padding shift and its index live on ``device``."""
    if padding == "same":
        (top, bottom), (left, right) = [((k - 1) // 2, k - 1 - (k - 1) // 2) for k in kernel_hw]
    elif padding == "valid":
        top = bottom = left = right = 0
    else:
        (top, left) = padding
        bottom, right = top, left
    fft_h, fft_w = in_hw[0] + top + bottom, in_hw[1] + left + right
    full_out = (fft_h - kernel_hw[0] + 1, fft_w - kernel_hw[1] + 1)
    if full_out[0] < 1 or full_out[1] < 1:
        raise ValueError(
            f"input of size {tuple(in_hw)} (padded {fft_h}x{fft_w}) is smaller than the kernel {tuple(kernel_hw)}"
        )
    ky, kx = np.divmod(band_indices(fft_h, fft_w, float(compress_rate)), fft_w // 2 + 1)
    cols = int(kx.max()) + 1
    phase = np.exp(-2j * np.pi * (ky * top / fft_h + kx * left / fft_w))
    return _Plan((top, left), tuple(in_hw), (fft_h, fft_w), full_out, tuple(kernel_hw), tuple(stride), cols,
                 torch.from_numpy(ky * cols + kx).to(device), torch.from_numpy(phase).to(device))


# ----------------------------------------------------------------------------------------------- spectra
@functools.lru_cache(maxsize=64)
def _dft_columns(width: int, fft_w: int, cols: int, dtype, device) -> torch.Tensor:
    """(width, 2 cols) real matrix: x @ it = the first ``cols`` rfft coefficients of x zero-extended to
    ``fft_w``, as interleaved (real, imaginary) pairs."""
    angle = 2 * math.pi * np.outer(np.arange(width), np.arange(cols)) / fft_w
    return torch.from_numpy(np.stack((np.cos(angle), -np.sin(angle)), axis=-1).reshape(width, 2 * cols)).to(
        device=device, dtype=dtype)


SPECTRUM_CHUNK = 1 << 17  # complex (fft_h x cols) grid values transformed at once (1 MiB): bounds the transients


def _band_spectrum(t: torch.Tensor, plan: _Plan, shift: bool) -> torch.Tensor:
    """Kept rfft2 coefficients of real maps ``t`` (..., h, w) zero-extended to the FFT size (and shifted by the
    padding when ``shift``), as (..., 2, K) planar real (real parts, then imaginary parts: the kernels'
    operand layout). The maps are transformed a chunk at a time
    (``SPECTRUM_CHUNK``), so the transforms' buffers stay small whatever the batch."""
    fft_h, fft_w = plan.fft_hw
    maps = t.reshape(-1, *t.shape[-2:])
    out = t.new_empty(maps.shape[0], 2, plan.n_kept)
    columns = _dft_columns(t.shape[-1], fft_w, plan.cols, t.dtype, t.device)
    step = max(1, SPECTRUM_CHUNK // (fft_h * plan.cols))
    for start in range(0, maps.shape[0], step):
        # width-wise DFT of the kept columns only, as one real matmul with interleaved (cos, -sin) columns
        # whose output is viewed as complex: no full-width spectrum is allocated and then cropped
        z = torch.view_as_complex((maps[start:start + step] @ columns).unflatten(-1, (plan.cols, 2)))
        z = torch.fft.fft(z, n=fft_h, dim=-2)
        kept = z.flatten(-2).index_select(-1, plan.index)
        if shift:
            kept.mul_(plan.phase.to(kept.dtype))
        out[start:start + step, 0] = kept.real
        out[start:start + step, 1] = kept.imag
    return out.view(*t.shape[:-2], 2, plan.n_kept)


@functools.lru_cache(maxsize=64)
def _inverse_dft_columns(cols: int, fft_w: int, width: int, dtype, device) -> torch.Tensor:
    """(2 cols, width) real matrix: interleaved (real, imaginary) rfft coefficients 0..cols-1 (the others
    zero) @ it = the first ``width`` samples of ``irfft(., n=fft_w)``. Columns 0 and fft_w / 2 count once,
    the others twice (their conjugates), and imaginary parts of self-conjugate columns are ignored, as
    irfft does."""
    k = np.arange(cols)[:, None]
    weight = np.where((k == 0) | (2 * k == fft_w), 1.0, 2.0) / fft_w
    angle = 2 * math.pi * k * np.arange(width)[None, :] / fft_w
    matrix = np.stack((weight * np.cos(angle), -weight * np.sin(angle)), axis=1)  # (cols, 2, width)
    return torch.from_numpy(matrix.reshape(2 * cols, width)).to(device=device, dtype=dtype)


def _band_inverse(handed_over: list, plan: _Plan, rows: slice, width: int, shift: bool) -> torch.Tensor:
    """Real maps from (..., K) complex kept coefficients (zeros elsewhere), undoing the padding shift when
    ``shift`` (in place); only output ``rows`` and the first ``width`` columns are returned. Other rows are
    never transformed along the width; when fewer than log2(fft_h) rows are wanted (the filter gradient),
    they come straight from the kept coefficients by one matmul (a partial inverse DFT) instead of a
    full-height inverse FFT of the zero-filled grid.

    The coefficients come as the only item of ``handed_over``, which is emptied: the caller keeps no
    reference, so they are freed as soon as they are used. Full-height inverses run a chunk of maps at a time
    (``SPECTRUM_CHUNK``), so the transforms' buffers stay small whatever the batch."""
    fft_h, fft_w = plan.fft_hw
    kept = handed_over.pop()
    if shift:
        kept.mul_(plan.phase.to(kept.dtype).conj())
    batch_shape = kept.shape[:-1]
    wanted = tuple(range(fft_h)[rows])
    columns = _inverse_dft_columns(plan.cols, fft_w, width, kept.real.dtype, kept.device)
    if len(wanted) < math.log2(fft_h):
        z = (kept @ _partial_row_inverse(plan, wanted, kept.dtype, kept.device)).view(*batch_shape, len(wanted),
                                                                                         plan.cols)
        del kept
        return _columns_inverse(z, columns)
    # full height: zero-filled grid, inverse FFT along the height, a chunk of maps at a time
    maps = kept.reshape(-1, plan.n_kept)
    out = columns.new_empty(maps.shape[0], len(wanted), width)
    step = max(1, SPECTRUM_CHUNK // (fft_h * plan.cols))
    for start in range(0, maps.shape[0], step):
        chunk = maps[start:start + step]
        grid = chunk.new_zeros(chunk.shape[0], fft_h * plan.cols)
        grid.index_copy_(-1, plan.index, chunk)
        z = torch.fft.ifft(grid.view(-1, fft_h, plan.cols), dim=-2)
        # rows cropped after the width-wise inverse, which then reads the contiguous ifft output
        out[start:start + step] = _columns_inverse(z, columns)[:, rows, :]
    return out.view(*batch_shape, len(wanted), width)


def _columns_inverse(z: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """Width-wise inverse of the kept columns straight to the wanted outputs, as one real matmul on the
    (real, imaginary) pairs: no full-width map is allocated and then cropped."""
    return torch.view_as_real(z).flatten(-2) @ columns


def _partial_row_inverse(plan: _Plan, wanted: tuple, dtype, device) -> torch.Tensor:
    """(K, len(wanted) * cols) complex matrix: kept coefficients @ it = the height-wise inverse DFT of the
    zero-filled (fft_h, cols) grid at the ``wanted`` rows, laid out (row, column). Cached on the plan."""
    key = ("partial_row_inverse", wanted, dtype, device)
    if key not in plan.matrices:
        plan.matrices[key] = _partial_row_inverse_matrix(plan, wanted).to(device=device, dtype=dtype)
    return plan.matrices[key]


def _partial_row_inverse_matrix(plan: _Plan, wanted: tuple) -> torch.Tensor:
    fft_h = plan.fft_hw[0]
    ky, kx = np.divmod(plan.index.cpu().numpy(), plan.cols)
    matrix = np.zeros((len(ky), len(wanted), plan.cols), np.complex128)
    rows = np.asarray(wanted)
    matrix[np.arange(len(ky))[:, None], np.arange(len(rows))[None, :], kx[:, None]] = np.exp(
        2j * np.pi * ky[:, None] * rows[None, :] / fft_h) / fft_h
    return torch.from_numpy(matrix.reshape(len(ky), -1))


# ----------------------------------------------------------------------------------------------- products
# The three products: planar operands x: (N, C, 2, K), w: (F, C, 2, K), g: (N, F, 2, K); complex (.., K) result.
def _as_complex(planar: torch.Tensor) -> torch.Tensor:
    return torch.complex(planar[..., 0, :], planar[..., 1, :])


def _torch_forward(x, w):
    return torch.einsum("nck,fck->nfk", _as_complex(x), _as_complex(w).conj())


def _torch_grad_input(g, w):
    return torch.einsum("nfk,fck->nck", _as_complex(g), _as_complex(w))


def _torch_grad_weight(x, g):
    return torch.einsum("nck,nfk->fck", _as_complex(x), _as_complex(g).conj())


def _cpu_cmac(a, b, ni, nj, nr, a_si, a_sr, b_sj, b_sr, conj_a, conj_b):
    """Call the C kernel semjpeg_bl_cmac_f32 on contiguous float32 CPU planar tensors; complex (ni, nj, K) out."""
    from semantic_jpeg.native import ffi, lib

    for name, t in (("a", a), ("b", b)):
        if t.dtype != torch.float32 or t.device.type != "cpu" or not t.is_contiguous():
            raise TypeError(f"native band-limited kernel needs a contiguous float32 CPU tensor for {name}")
    nk = a.shape[-1]
    if b.shape[-1] != nk or a.numel() != ni * nr * 2 * nk or b.numel() != nj * nr * 2 * nk:
        raise ValueError("native band-limited kernel: operand shapes do not match")
    out = torch.empty(ni, nj, nk, 2, dtype=torch.float32)
    # a, b and out (whose storage the struct's bare pointers address) stay referenced until the call returns
    args = ffi.new("semjpeg_bl_cmac_args *", dict(
        a=ffi.cast("float *", a.data_ptr()), b=ffi.cast("float *", b.data_ptr()),
        out=ffi.cast("float *", out.data_ptr()), ni=ni, nj=nj, nr=nr, nk=nk, a_si=a_si, a_sr=a_sr, b_sj=b_sj,
        b_sr=b_sr, conj_a=int(conj_a), conj_b=int(conj_b)))
    if lib.semjpeg_bl_cmac_f32(args) != 0:
        raise ValueError("native band-limited kernel refused its arguments (a NULL pointer or a negative size)")
    return torch.view_as_complex(out)


def _native_forward(x, w):
    (n, c), f = x.shape[:2], w.shape[0]
    if x.is_cuda:
        return _cuda_call("forward", x, w)
    return _cpu_cmac(x, w, n, f, c, c, 1, c, 1, False, True)


def _native_grad_input(g, w):
    (n, f), c = g.shape[:2], w.shape[1]
    if g.is_cuda:
        return _cuda_call("grad_input", g, w)
    return _cpu_cmac(g, w, n, c, f, f, 1, 1, c, False, False)


def _native_grad_weight(x, g):
    (n, c), f = x.shape[:2], g.shape[1]
    if x.is_cuda:
        return _cuda_call("grad_weight", x, g)
    # dW[f, c] = sum_n conj(G[n, f]) X[n, c]: A = G indexed (f, n), B = X indexed (c, n).
    return _cpu_cmac(g, x, f, c, n, 1, f, 1, c, True, False)


_PRODUCTS = {
    "torch": (_torch_forward, _torch_grad_input, _torch_grad_weight),
    "native": (_native_forward, _native_grad_input, _native_grad_weight),
}


def _cuda_call(product: str, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Run one product of band_limited_cuda.cu on a's device and torch's current stream there."""
    with torch.cuda.device(a.device):
        return torch.view_as_complex(getattr(_cuda_module(), product)(a, b, torch.cuda.current_stream().cuda_stream))


@functools.lru_cache(maxsize=1)
def _cuda_module():
    """Compile (once, cached by torch) and load the CUDA kernels of band_limited_cuda.cu."""
    from torch.utils.cpp_extension import load

    source = Path(__file__).resolve().parents[1] / "native" / "band_limited_cuda.cu"
    return load(name="semjpeg_band_limited_cuda", sources=[str(source)], verbose=False)


def cuda_kernel_available() -> bool:
    """True when a CUDA device is present and the CUDA kernel compiles."""
    if not torch.cuda.is_available():
        return False
    try:
        _cuda_module()
    except Exception as exc:  # noqa: BLE001 - any build failure means "not available"; auto falls back to torch
        warnings.warn(f"band-limited CUDA kernel unavailable, using the torch path: {exc}", stacklevel=2)
        return False
    return True


def _resolve_backend(backend: str, x: torch.Tensor) -> str:
    if backend == "torch":
        return "torch"
    applies = x.dtype == torch.float32 and (x.device.type == "cpu" or (x.is_cuda and cuda_kernel_available()))
    if backend == "native":
        if not applies:
            raise TypeError(
                f"the native band-limited kernels take float32 tensors on the CPU or on a CUDA device with a "
                f"working nvcc; got {x.dtype} on {x.device}. Use backend='torch' or 'auto'."
            )
        return "native"
    return "native" if applies else "torch"


# ----------------------------------------------------------------------------------------------- autograd
class BandLimitedConv2dFunction(torch.autograd.Function):
    """Band-limited cross-correlation with map reuse: compressed spectra saved in forward, reused in backward."""

    @staticmethod
    def forward(ctx, x, weight, bias, plan: _Plan, backend: str):
        forward_product = _PRODUCTS[backend][0]
        x_spec = _band_spectrum(x, plan, shift=True)
        w_spec = _band_spectrum(weight, plan, shift=False)
        (out_h, out_w), (stride_h, stride_w) = plan.full_out_hw, plan.stride
        y = _band_inverse([forward_product(x_spec, w_spec)], plan, slice(0, out_h, stride_h), out_w, shift=False)
        y = y[..., ::stride_w]
        y = y + bias.view(1, -1, 1, 1) if bias is not None else y.contiguous()
        ctx.save_for_backward(x_spec, w_spec)
        ctx.plan, ctx.backend, ctx.has_bias = plan, backend, bias is not None
        return y

    @staticmethod
    @once_differentiable  # the backward reuses forward's spectra, which autograd does not track: a double
    def backward(ctx, grad_y):  # backward (gradient penalties) would be silently wrong, so it raises instead
        x_spec, w_spec = ctx.saved_tensors
        plan = ctx.plan
        _, grad_input_product, grad_weight_product = _PRODUCTS[ctx.backend]
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        grad_x = grad_w = grad_b = None
        if need_x or need_w:
            g_full = grad_y
            if plan.stride != (1, 1):  # scatter the strided gradient back onto the stride-1 output grid
                g_full = grad_y.new_zeros(*grad_y.shape[:2], *plan.full_out_hw)
                g_full[..., :: plan.stride[0], :: plan.stride[1]] = grad_y
            g_spec = _band_spectrum(g_full, plan, shift=False)
            del g_full
            if need_w:  # first: its transients then do not coexist with the input-sized grad_x
                kh, kw = plan.kernel_hw
                grad_w = _band_inverse([grad_weight_product(x_spec, g_spec)], plan, slice(0, kh), kw, shift=False)
            if need_x:
                in_h, in_w = plan.in_hw
                product = [grad_input_product(g_spec, w_spec)]
                del g_spec  # not needed any more: its memory is free for the inverse transform's transients
                grad_x = _band_inverse(product, plan, slice(0, in_h), in_w, shift=True)
        if need_b and ctx.has_bias:
            grad_b = grad_y.sum(dim=(0, 2, 3))
        return grad_x, grad_w, grad_b, None, None


def band_limited_conv2d(x, weight, bias=None, stride=1, padding=0, compress_rate=0.5, backend="auto"):
    """Functional form of :class:`BandLimitedConv2d` (groups = dilation = 1, zero padding)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if x.dim() != 4 or weight.dim() != 4:
        raise ValueError(f"expected a 4-D input (N, C, H, W) and weight, got {tuple(x.shape)}, {tuple(weight.shape)}")
    if x.shape[1] != weight.shape[1]:
        raise ValueError(f"input has {x.shape[1]} channels, the weight expects {weight.shape[1]}")
    if not x.is_floating_point() or x.dtype != weight.dtype:
        raise TypeError(f"input and weight must share a floating dtype, got {x.dtype} and {weight.dtype}")
    if x.numel() == 0 and (x.shape[0] != 0 or 0 in x.shape[1:]):
        raise ValueError(f"empty input of shape {tuple(x.shape)}")
    if bias is not None and (bias.shape != (weight.shape[0],) or bias.dtype != weight.dtype):
        raise ValueError(f"bias must be 1-D with {weight.shape[0]} elements of dtype {weight.dtype}, got shape "
                         f"{tuple(bias.shape)} {bias.dtype}")
    _check_rate(compress_rate)
    stride = _pair(stride, "stride")
    if isinstance(padding, str):
        if padding not in ("same", "valid"):
            raise ValueError(f"padding must be an int, a pair, 'same' or 'valid', got {padding!r}")
        if padding == "same" and stride != (1, 1):
            raise ValueError("padding='same' is not supported for strided convolutions (as in nn.Conv2d)")
    else:
        padding = _pair(padding, "padding", allow_zero=True)
    if x.shape[0] == 0:  # an empty batch (a drop-in for nn.Conv2d): the empty output, shaped as F.conv2d shapes it
        return F.conv2d(x, weight, bias, stride, padding)
    plan = _make_plan(tuple(x.shape[-2:]), tuple(weight.shape[-2:]), stride, padding, float(compress_rate), x.device)
    return BandLimitedConv2dFunction.apply(x, weight, bias, plan, _resolve_backend(backend, x))


def _pair(value, name, allow_zero=False):
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in pair):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    if any(v < (0 if allow_zero else 1) for v in pair):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '>= 1'}, got {value!r}")
    return pair


# ----------------------------------------------------------------------------------------------- module
class BandLimitedConv2d(nn.Conv2d):
    """Drop-in ``nn.Conv2d`` computed as a band-limited FFT convolution (Dziedzic et al., ICML 2019).

    Same parameters (``weight``, ``bias``) and state-dict keys as ``nn.Conv2d``. Supports rectangular inputs
    and kernels, stride, zero padding (ints, pairs, ``'same'``, ``'valid'``); groups, dilation and other
    padding modes raise. ``compress_rate`` in [0, 1) is the fraction of spectral coefficients discarded;
    at 0 the layer equals ``nn.Conv2d`` to float tolerance.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, padding_mode="zeros", device=None, dtype=None, compress_rate=0.5, backend="auto"):
        if groups != 1:
            raise ValueError(f"BandLimitedConv2d supports groups=1 only, got groups={groups}")
        if _pair(dilation, "dilation") != (1, 1):
            raise ValueError(f"BandLimitedConv2d supports dilation=1 only, got dilation={dilation}")
        if padding_mode != "zeros":
            raise ValueError(f"BandLimitedConv2d supports padding_mode='zeros' only, got {padding_mode!r}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        _check_rate(compress_rate)
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias,
                         device=device, dtype=dtype)
        self.compress_rate = float(compress_rate)
        self.backend = backend

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:  # unbatched (C, H, W), as nn.Conv2d accepts
            return self.forward(x.unsqueeze(0)).squeeze(0)
        return band_limited_conv2d(x, self.weight, self.bias, self.stride, self.padding, self.compress_rate,
                                   self.backend)

    def kept_coefficients(self, input_hw) -> tuple[int, int]:
        """(kept, total) spectral coefficients per channel for an input of spatial size ``input_hw``."""
        plan = _make_plan(tuple(input_hw), tuple(self.kernel_size), tuple(self.stride), self.padding,
                          self.compress_rate, torch.device("cpu"))
        fft_h, fft_w = plan.fft_hw
        return plan.n_kept, fft_h * (fft_w // 2 + 1)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, compress_rate={self.compress_rate}, backend={self.backend!r}"

    @classmethod
    def from_conv2d(cls, conv: nn.Conv2d, compress_rate=0.5, backend="auto") -> BandLimitedConv2d:
        """A band-limited copy of ``conv`` sharing its weight and bias values."""
        layer = cls(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
                    dilation=conv.dilation, groups=conv.groups, bias=conv.bias is not None,
                    padding_mode=conv.padding_mode, device=conv.weight.device, dtype=conv.weight.dtype,
                    compress_rate=compress_rate, backend=backend)
        with torch.no_grad():
            layer.weight.copy_(conv.weight)
            if conv.bias is not None:
                layer.bias.copy_(conv.bias)
        return layer


def swap_conv2d(model: nn.Module, compress_rate=0.5, backend="auto", strict=True) -> list[str]:
    """Replace, in place, every ``nn.Conv2d`` of ``model`` by a :class:`BandLimitedConv2d` with its weights.

    Returns the qualified names of the swapped layers. A Conv2d the band-limited layer cannot represent (groups,
    dilation, non-zero padding mode, or a subclass with its own ``forward``, such as TF-"SAME" padding) raises
    with ``strict=True`` and is left as it is otherwise; with ``strict=True`` nothing is swapped unless every
    layer can be. A layer used at several places of the model is replaced everywhere by one band-limited layer
    (the sharing is kept). Layers that are already band-limited get the new ``compress_rate`` and ``backend``.
    """
    _check_rate(compress_rate)
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    # plan every replacement first, so that a layer that cannot be swapped leaves the model as it was
    replacements: dict[int, nn.Module | None] = {}  # id(conv) -> its band-limited layer (None: left as it is)
    places = []
    for parent_name, parent in list(model.named_modules()):
        for child_name, child in list(parent._modules.items()):  # named_children() skips a repeated module
            name = f"{parent_name}.{child_name}" if parent_name else child_name
            if isinstance(child, BandLimitedConv2d):
                places.append((parent, child_name, name, child))
            elif isinstance(child, nn.Conv2d):
                if id(child) not in replacements:
                    replacements[id(child)] = _band_limited_copy(child, name, compress_rate, backend, strict)
                places.append((parent, child_name, name, child))
    swapped = []
    for parent, child_name, name, child in places:
        if isinstance(child, BandLimitedConv2d):
            child.compress_rate, child.backend = float(compress_rate), backend
        elif replacements[id(child)] is not None:
            setattr(parent, child_name, replacements[id(child)])
        else:
            continue
        swapped.append(name)
    return swapped


def _band_limited_copy(conv: nn.Conv2d, name: str, compress_rate, backend, strict: bool):
    """The band-limited layer for ``conv``; None (or ValueError when ``strict``) for one it cannot represent."""
    try:
        if type(conv).forward is not nn.Conv2d.forward:
            raise ValueError(f"{type(conv).__name__} computes its own forward (e.g. its own padding), which a "
                             "band-limited layer would not reproduce")
        return BandLimitedConv2d.from_conv2d(conv, compress_rate, backend)
    except ValueError as exc:
        if strict:
            raise ValueError(f"cannot band-limit layer {name!r}: {exc}") from exc
        return None


__all__ = ["BandLimitedConv2d", "BandLimitedConv2dFunction", "band_limited_conv2d", "band_indices", "swap_conv2d",
           "cuda_kernel_available"]
