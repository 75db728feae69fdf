"""Band-limited FFT convolution (Dziedzic et al., ICML 2019): exactness at 0%, gradients, mask, numpy oracle,
kernels."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from semantic_jpeg.training.band_limited import (  # noqa: E402
    BandLimitedConv2d,
    band_indices,
    band_limited_conv2d,
    cuda_kernel_available,
    swap_conv2d,
)

BACKENDS = ["torch", "native"]
# (input HxW, kernel, stride, padding): square, rectangular, strided, asymmetric padding, 'same', 1x1.
GEOMETRIES = [
    ((8, 8), 3, 1, 1),
    ((9, 7), 3, 2, 0),
    ((10, 11), (3, 2), (2, 1), (1, 2)),
    ((7, 6), (4, 3), 1, "same"),
    ((6, 5), 1, 2, 0),
    ((12, 12), 5, 3, 2),
]


def _pair_conv(geometry, bias=True, dtype=torch.float32, seed=0):
    (h, w), k, s, p = geometry
    torch.manual_seed(seed)
    conv = nn.Conv2d(3, 5, k, stride=s, padding=p, bias=bias, dtype=dtype)
    x = torch.randn(2, 3, h, w, dtype=dtype, requires_grad=True)
    return conv, x


def _grads(module, x, grad_y):
    y = module(x)
    params = [module.weight] + ([module.bias] if module.bias is not None else [])
    return (y, *torch.autograd.grad(y, [x, *params], grad_y))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_equals_conv2d_at_zero_compression(geometry, backend):
    conv, x = _pair_conv(geometry)
    layer = BandLimitedConv2d.from_conv2d(conv, compress_rate=0.0, backend=backend)
    grad_y = torch.randn_like(conv(x))
    for got, want in zip(_grads(layer, x, grad_y), _grads(conv, x, grad_y)):
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-4)


def test_no_bias_and_unbatched_input():
    conv, x = _pair_conv(GEOMETRIES[0], bias=False)
    layer = BandLimitedConv2d.from_conv2d(conv, compress_rate=0.0)
    assert layer.bias is None
    torch.testing.assert_close(layer(x[0]), conv(x[0]), atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize(
    "size,kernel,stride,padding,rate",
    [((6, 5), 3, 2, 1, 0.0), ((6, 5), (3, 2), (2, 1), (1, 2), 0.5), ((5, 6), (2, 3), 1, "same", 0.3),
     ((7, 4), 3, 1, 0, 0.8)],
)
def test_gradcheck_double(size, kernel, stride, padding, rate):
    gen = torch.Generator().manual_seed(1)
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    x = torch.randn(1, 2, *size, dtype=torch.float64, generator=gen, requires_grad=True)
    wt = torch.randn(2, 2, kh, kw, dtype=torch.float64, generator=gen, requires_grad=True)
    b = torch.randn(2, dtype=torch.float64, generator=gen, requires_grad=True)

    def fn(x, wt, b):
        return band_limited_conv2d(x, wt, b, stride=stride, padding=padding, compress_rate=rate)

    assert torch.autograd.gradcheck(fn, (x, wt, b))


@pytest.mark.parametrize("size", [(8, 8), (34, 34), (9, 7), (10, 13), (5, 4), (1, 6)])
@pytest.mark.parametrize("rate", [0.0, 0.1, 0.25, 0.5, 0.75, 0.9])
def test_kept_count_symmetry_and_low_frequency_order(size, rate):
    fft_h, fft_w = size
    half_w = fft_w // 2 + 1
    total = fft_h * half_w
    kept = band_indices(fft_h, fft_w, rate)
    assert abs(len(kept) - (1 - rate) * total) <= 1.0, (len(kept), (1 - rate) * total)
    assert len(np.unique(kept)) == len(kept) and kept.min() >= 0 and kept.max() < total
    mask = np.zeros(total, bool)
    mask[kept] = True
    mask = mask.reshape(fft_h, half_w)
    assert mask[0, 0], "DC must be kept"
    # conjugate symmetry in the self-conjugate columns: (ky, 0) kept iff (-ky, 0) kept (also Nyquist column)
    for col in [0] + ([fft_w // 2] if fft_w % 2 == 0 else []):
        np.testing.assert_array_equal(mask[:, col], mask[(-np.arange(fft_h)) % fft_h, col])
    # L-shaped shells: every kept coefficient is at most as far (Chebyshev) from DC as every discarded one
    ky = np.minimum(np.arange(fft_h), fft_h - np.arange(fft_h))[:, None] / fft_h
    kx = np.arange(half_w)[None, :] / fft_w
    dist = np.maximum(ky, kx)
    if not mask.all():
        assert dist[mask].max() <= dist[~mask].min() + 1e-12


def test_layer_reports_kept_coefficients():
    layer = BandLimitedConv2d(64, 64, 3, padding=1, compress_rate=0.5)
    kept, total = layer.kept_coefficients((32, 32))
    assert total == 34 * 18 and abs(kept - total / 2) <= 1


def _numpy_band_limited_reference(x, w, b, stride, pad, rate):
    """Full-plane numpy oracle: fft2, symmetric full-plane mask, product, ifft2; returns (real, max |imag|)."""
    (top, bottom), (left, right) = pad
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    fft_h, fft_w = xp.shape[-2:]
    half_w = fft_w // 2 + 1
    half = np.zeros(fft_h * half_w, bool)
    half[band_indices(fft_h, fft_w, rate)] = True
    half = half.reshape(fft_h, half_w)
    full = np.zeros((fft_h, fft_w), bool)
    for ky in range(fft_h):
        for kx in range(fft_w):
            full[ky, kx] = half[ky, kx] if kx < half_w else half[(-ky) % fft_h, fft_w - kx]
    xs = np.fft.fft2(xp) * full
    ws = np.fft.fft2(w, s=(fft_h, fft_w)) * full
    y = np.fft.ifft2(np.einsum("nchw,fchw->nfhw", xs, np.conj(ws)))
    kh, kw = w.shape[-2:]
    y = y[..., : fft_h - kh + 1 : stride[0], : fft_w - kw + 1 : stride[1]]
    return y.real + b[None, :, None, None], np.abs(y.imag).max()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("rate", [0.25, 0.5, 0.75])
def test_matches_numpy_band_limited_reference(rate, backend):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 10, 9)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 2)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    want, imag = _numpy_band_limited_reference(x.astype(np.float64), w.astype(np.float64), b, (2, 1),
                                               ((1, 1), (2, 2)), rate)
    assert imag < 1e-10, "a conjugate-symmetric mask keeps the band-limited output real"
    got = band_limited_conv2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), stride=(2, 1),
                              padding=(1, 2), compress_rate=rate, backend=backend)
    np.testing.assert_allclose(got.numpy(), want, atol=2e-5, rtol=1e-4)
    full = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), stride=(2, 1), padding=(1, 2))
    assert (got - full).abs().max() > 1e-2, "band-limiting must change the output"


def _planar_to_complex(a):
    return a[..., 0, :] + 1j * a[..., 1, :]


@pytest.mark.parametrize("conj_a,conj_b", [(False, False), (False, True), (True, False), (True, True)])
def test_native_kernel_against_numpy(conj_a, conj_b):
    """C kernel out[i, j] = sum_r A'[i, r] B'[j, r] against numpy; sizes off the tile/block multiples."""
    from semantic_jpeg.native import ffi, lib

    rng = np.random.default_rng(4)
    ni, nj, nr, nk = 3, 7, 5, 131
    a = rng.standard_normal((ni, nr, 2, nk)).astype(np.float32)
    b = rng.standard_normal((nr, nj, 2, nk)).astype(np.float32)  # B stored (r, j): b_sj = 1, b_sr = nj
    out = np.empty((ni, nj, nk, 2), np.float32)
    views = [ffi.from_buffer("float[]", x) for x in (a, b, out)]  # referenced until the call returns
    args = ffi.new("semjpeg_bl_cmac_args *", dict(a=views[0], b=views[1], out=views[2], ni=ni, nj=nj, nr=nr, nk=nk,
                                                  a_si=nr, a_sr=1, b_sj=1, b_sr=nj, conj_a=int(conj_a),
                                                  conj_b=int(conj_b)))
    assert lib.semjpeg_bl_cmac_f32(args) == 0
    az, bz = _planar_to_complex(a.astype(np.float64)), _planar_to_complex(b.astype(np.float64))
    az, bz = (np.conj(az) if conj_a else az), (np.conj(bz) if conj_b else bz)
    want = np.einsum("irk,rjk->ijk", az, bz)
    np.testing.assert_allclose(out[..., 0] + 1j * out[..., 1], want, atol=1e-4, rtol=1e-4)


def test_native_kernel_refuses_null_and_negative_arguments():
    """The C kernel returns -1 and writes nothing for a NULL struct, a NULL pointer or a negative size."""
    from semantic_jpeg.native import ffi, lib

    a, b = np.ones((1, 1, 2, 4), np.float32), np.ones((1, 1, 2, 4), np.float32)
    out = np.full((1, 1, 4, 2), 7.0, np.float32)
    views = [ffi.from_buffer("float[]", x) for x in (a, b, out)]
    good = dict(a=views[0], b=views[1], out=views[2], ni=1, nj=1, nr=1, nk=4, a_si=1, a_sr=1, b_sj=1, b_sr=1)
    assert lib.semjpeg_bl_cmac_f32(ffi.NULL) == -1
    assert lib.semjpeg_bl_cmac_f32(ffi.new("semjpeg_bl_cmac_args *", {**good, "b": ffi.NULL})) == -1
    assert lib.semjpeg_bl_cmac_f32(ffi.new("semjpeg_bl_cmac_args *", {**good, "nk": -1})) == -1
    assert (out == 7.0).all()
    assert lib.semjpeg_bl_cmac_f32(ffi.new("semjpeg_bl_cmac_args *", good)) == 0
    np.testing.assert_allclose(out[..., 0], 0.0)  # (1 + i)(1 + i) = 2i
    np.testing.assert_allclose(out[..., 1], 2.0)


def assert_backends_agree(conv, x, rate):
    """Output and all gradients of the native and torch backends agree; returns them per backend."""
    results = {}
    for backend in BACKENDS:
        layer = BandLimitedConv2d.from_conv2d(conv, compress_rate=rate, backend=backend)
        y = layer(x)
        results[backend] = (y, *torch.autograd.grad(y, [x, layer.weight, layer.bias], torch.ones_like(y)))
    for got, want in zip(results["native"], results["torch"]):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    return results


@pytest.mark.parametrize("rate", [0.0, 0.5, 0.75])
def test_native_and_torch_paths_agree(rate):
    torch.manual_seed(5)
    conv = nn.Conv2d(6, 9, 3, stride=2, padding=1)
    x = torch.randn(3, 6, 13, 10, requires_grad=True)
    assert_backends_agree(conv, x, rate)


def test_band_limited_training_step_reduces_loss():
    torch.manual_seed(6)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 3, padding=1))
    swap_conv2d(model, compress_rate=0.5)
    x = torch.randn(2, 1, 8, 8)
    target = F.avg_pool2d(x, 3, 1, 1)
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    losses = []
    for _ in range(15):
        opt.zero_grad()
        loss = F.mse_loss(model(x), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_swap_conv2d_keeps_weights_and_state_dict():
    torch.manual_seed(7)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.Sequential(nn.Conv2d(8, 8, 3, stride=2, padding=1, bias=False)))
    x = torch.randn(2, 3, 16, 16)
    model.eval()
    want, keys = model(x), list(model.state_dict())
    names = swap_conv2d(model, compress_rate=0.0)
    assert names == ["0", "3.0"]
    assert all(isinstance(model.get_submodule(n), BandLimitedConv2d) for n in names)
    assert list(model.state_dict()) == keys
    torch.testing.assert_close(model(x), want, atol=2e-5, rtol=1e-4)
    swap_conv2d(model, compress_rate=0.5)
    assert model[0].compress_rate == 0.5


def test_swap_conv2d_unsupported_layers():
    model = nn.Sequential(nn.Conv2d(4, 4, 3), nn.Conv2d(4, 4, 3, groups=2))
    with pytest.raises(ValueError, match="groups"):
        swap_conv2d(model)
    assert swap_conv2d(model, strict=False) == ["0"]
    assert type(model[1]) is nn.Conv2d


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(groups=2), ValueError, "groups"),
        (dict(dilation=2), ValueError, "dilation"),
        (dict(padding_mode="reflect"), ValueError, "padding_mode"),
        (dict(compress_rate=1.0), ValueError, "compress_rate"),
        (dict(compress_rate=-0.1), ValueError, "compress_rate"),
        (dict(compress_rate="half"), TypeError, "compress_rate"),
        (dict(backend="cudnn"), ValueError, "backend"),
    ],
)
def test_bad_parameters_raise(kwargs, error, match):
    with pytest.raises(error, match=match):
        BandLimitedConv2d(4, 4, 3, **kwargs)


def test_bad_inputs_raise():
    layer = BandLimitedConv2d(4, 4, 3)
    with pytest.raises(ValueError, match="channels"):
        layer(torch.randn(1, 3, 8, 8))
    with pytest.raises(ValueError, match="smaller than the kernel"):
        layer(torch.randn(1, 4, 2, 8))
    with pytest.raises(ValueError, match="empty"):
        layer(torch.randn(1, 4, 8, 0))  # an empty batch is fine (test_an_empty_batch_...), an empty image is not
    with pytest.raises(TypeError, match="dtype"):
        layer(torch.randn(1, 4, 8, 8, dtype=torch.float64))
    with pytest.raises(TypeError, match="native"):
        band_limited_conv2d(torch.randn(1, 4, 8, 8, dtype=torch.float64), torch.randn(4, 4, 3, 3, dtype=torch.float64),
                            backend="native")
    with pytest.raises(ValueError, match="stride"):
        band_limited_conv2d(torch.randn(1, 4, 8, 8), torch.randn(4, 4, 3, 3), stride=0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("rate", [0.0, 0.5])
def test_cuda_kernel_matches_torch_path(rate):
    assert cuda_kernel_available(), "a CUDA device is present but the CUDA kernel did not build"
    torch.manual_seed(8)
    conv = nn.Conv2d(5, 7, 3, stride=2, padding=1).cuda()
    x = torch.randn(3, 5, 15, 12, device="cuda", requires_grad=True)
    results = assert_backends_agree(conv, x, rate)
    if rate == 0.0:
        torch.testing.assert_close(results["native"][0], conv(x), atol=1e-4, rtol=1e-4)


def test_swap_conv2d_changes_nothing_on_failure_keeps_sharing_and_refuses_own_forwards():
    from semantic_jpeg.training.efficientnet import TFSameConv2d

    model = nn.Sequential(nn.Conv2d(4, 4, 3), nn.Conv2d(4, 4, 3, groups=2))
    with pytest.raises(ValueError, match="groups"):
        swap_conv2d(model)
    assert type(model[0]) is nn.Conv2d  # the failed strict swap left the first layer alone too
    shared = nn.Conv2d(3, 3, 3, padding=1)
    tied = nn.Sequential(shared, nn.ReLU(), shared)
    assert swap_conv2d(tied, compress_rate=0.0) == ["0", "2"] and tied[0] is tied[2]
    same = nn.Sequential(TFSameConv2d(3, 4, 3, stride=1))
    with pytest.raises(ValueError, match="own forward"):
        swap_conv2d(same)
    assert swap_conv2d(same, strict=False) == [] and same(torch.rand(1, 3, 8, 8)).shape == (1, 4, 8, 8)
    with pytest.raises(ValueError, match="backend"):
        swap_conv2d(nn.Sequential(BandLimitedConv2d(3, 4, 3)), backend="bogus")


def test_bias_is_checked_and_double_backward_raises_instead_of_being_wrong():
    x = torch.randn(1, 2, 6, 6, dtype=torch.double, requires_grad=True)
    w = torch.randn(3, 2, 3, 3, dtype=torch.double, requires_grad=True)
    for bias in (torch.zeros(1, dtype=torch.double), torch.zeros(3, 1, dtype=torch.double), torch.zeros(3)):
        with pytest.raises(ValueError, match="bias"):
            band_limited_conv2d(x, w, bias, compress_rate=0.0)
    (gx,) = torch.autograd.grad(band_limited_conv2d(x, w, compress_rate=0.0).pow(2).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="differentiate twice"):  # a gradient penalty's backward
        gx.pow(2).sum().backward()


def test_an_empty_batch_gives_the_empty_output_of_nn_conv2d():
    layer = BandLimitedConv2d(3, 4, 3, padding=1, stride=2)
    x = torch.rand(0, 3, 9, 8)
    assert layer(x).shape == nn.Conv2d(3, 4, 3, padding=1, stride=2)(x).shape == (0, 4, 5, 4)
    with pytest.raises(ValueError, match="empty"):
        layer(torch.rand(1, 3, 0, 8))
