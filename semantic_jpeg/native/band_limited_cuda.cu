// Band-limited FFT convolution, CUDA version of band_limited.c (Dziedzic et al., ICML 2019; dissertation sec. 2.2.3).
//
// out[i, j, k] = sum_r A'[i, r, k] * B'[j, r, k] over planar complex rows (nk real parts, then nk imaginary
// parts), written as interleaved complex (ni, nj, nk, 2); A' / B' are the operand or its conjugate. One thread computes one output cell (i, j, k): the complex
// product is fused with the reduction over r in the thread, so no (i, j, r, k) intermediate exists, and it
// takes 3 real multiplications (Gauss): t1 = ar br, t2 = ai bi, t3 = (ar + ai)(br + bi), summed over r, then
// re = t1 - t2, im = t3 - t1 - t2. Consecutive threads read consecutive k, so loads are coalesced.
//
// Compiled on first use by semantic_jpeg.training.band_limited (torch.utils.cpp_extension.load) when a CUDA
// device is present. The caller passes torch's current CUDA stream as an integer handle, so this file needs
// only the CPU torch headers and the CUDA runtime.
#include <cuda_runtime.h>
#include <torch/extension.h>

namespace {

__global__ void cmac_kernel(const float *__restrict__ a, const float *__restrict__ b, float *__restrict__ out,
                            int64_t nj, int64_t nr, int64_t nk, int64_t a_si, int64_t a_sr, int64_t b_sj,
                            int64_t b_sr, float sign_a, float sign_b) {
    const int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    const int64_t j = blockIdx.y, i = blockIdx.z;
    if (k >= nk) return;
    float t1 = 0.f, t2 = 0.f, t3 = 0.f;
    for (int64_t r = 0; r < nr; ++r) {
        const float *pa = a + (i * a_si + r * a_sr) * 2 * nk;
        const float *pb = b + (j * b_sj + r * b_sr) * 2 * nk;
        const float ar = pa[k], ai = sign_a * pa[nk + k];
        const float br = pb[k], bi = sign_b * pb[nk + k];
        t1 += ar * br;
        t2 += ai * bi;
        t3 += (ar + ai) * (br + bi);
    }
    float *o = out + ((i * nj + j) * nk + k) * 2;
    o[0] = t1 - t2;
    o[1] = t3 - t1 - t2;
}

void check_operand(const torch::Tensor &t, const char *name) {
    TORCH_CHECK(t.is_cuda(), name, " must be a CUDA tensor");
    TORCH_CHECK(t.scalar_type() == torch::kFloat, name, " must be float32");
    TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
    TORCH_CHECK(t.dim() == 4 && t.size(2) == 2, name, " must be planar (rows, cols, 2, K)");
}

torch::Tensor cmac(const torch::Tensor &a, const torch::Tensor &b, int64_t ni, int64_t nj, int64_t nr, int64_t a_si,
                   int64_t a_sr, int64_t b_sj, int64_t b_sr, bool conj_a, bool conj_b, int64_t stream) {
    check_operand(a, "a");
    check_operand(b, "b");
    const int64_t nk = a.size(3);
    TORCH_CHECK(b.size(3) == nk && a.numel() == ni * nr * 2 * nk && b.numel() == nj * nr * 2 * nk,
                "operand shapes do not match");
    TORCH_CHECK(ni <= 65535 && nj <= 65535, "at most 65535 rows per operand");
    auto out = torch::empty({ni, nj, nk, 2}, a.options());
    const int threads = 128;
    const dim3 grid(static_cast<unsigned>((nk + threads - 1) / threads), static_cast<unsigned>(nj),
                    static_cast<unsigned>(ni));
    cmac_kernel<<<grid, threads, 0, reinterpret_cast<cudaStream_t>(stream)>>>(
        a.data_ptr<float>(), b.data_ptr<float>(), out.data_ptr<float>(), nj, nr, nk, a_si, a_sr, b_sj, b_sr,
        conj_a ? -1.f : 1.f, conj_b ? -1.f : 1.f);
    const cudaError_t err = cudaGetLastError();
    TORCH_CHECK(err == cudaSuccess, "band-limited CUDA kernel launch failed: ", cudaGetErrorString(err));
    return out;
}

// x: (N, C, 2, K) input spectra, w: (F, C, 2, K) filter spectra, g: (N, F, 2, K) output-gradient spectra.
torch::Tensor forward(const torch::Tensor &x, const torch::Tensor &w, int64_t stream) {  // Y[n, f] = sum_c X[n, c] conj(W[f, c])
    const int64_t n = x.size(0), c = x.size(1), f = w.size(0);
    return cmac(x, w, n, f, c, c, 1, c, 1, false, true, stream);
}

torch::Tensor grad_input(const torch::Tensor &g, const torch::Tensor &w, int64_t stream) {  // dX[n, c] = sum_f G[n, f] W[f, c]
    const int64_t n = g.size(0), f = g.size(1), c = w.size(1);
    return cmac(g, w, n, c, f, f, 1, 1, c, false, false, stream);
}

torch::Tensor grad_weight(const torch::Tensor &x, const torch::Tensor &g, int64_t stream) {  // dW[f, c] = sum_n conj(G[n, f]) X[n, c]
    const int64_t n = x.size(0), c = x.size(1), f = g.size(1);
    return cmac(g, x, f, c, n, 1, f, 1, c, true, false, stream);
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.def("forward", &forward, "band-limited forward product (CUDA)");
    m.def("grad_input", &grad_input, "band-limited input-gradient product (CUDA)");
    m.def("grad_weight", &grad_weight, "band-limited weight-gradient product (CUDA)");
}
