/* Band-limited FFT convolution: complex multiply-accumulate over a reduction axis (Dziedzic et al., ICML 2019; dissertation sec. 2.2.3).
 *
 * out[i, j, k] = sum_r  A'[i, r, k] * B'[j, r, k]        for k in [0, nk) kept (band-limited) frequencies,
 * where A' is A or conj(A) (conj_a) and B' is B or conj(B) (conj_b).
 *
 * Operands are planar: the row of a pair (i, r) holds nk real parts followed by nk imaginary parts, and
 * starts at a + (i * a_si + r * a_sr) * 2 * nk (likewise for b with j, b_sj, b_sr). out is interleaved complex
 * (ni, nj, nk, 2), so the caller views it as a complex array without a copy.
 * With A = input spectra X (n, c), B = filter spectra W (f, c) this is the forward product
 * Y[n, f] = sum_c X[n, c] conj(W[f, c]); the two backward products are dX[n, c] = sum_f dY[n, f] W[f, c] and
 * dW[f, c] = sum_n conj(dY[n, f]) X[n, c].
 *
 * Each complex product takes 3 real multiplications (Gauss): for a = ar + i ai, b = br + i bi,
 *   t1 = ar br, t2 = ai bi, t3 = (ar + ai)(br + bi);  re = t1 - t2, im = t3 - t1 - t2.
 * The three terms are linear, so they are summed over r first and combined once per output: per product
 * 3 multiplications and 3 additions. The product is fused with the reduction; the only intermediates are a
 * few tiles of nk_tile floats (no N x F x C x K array).
 */
#include <stdint.h>
#include <string.h>
#include "band_limited.h"

#define BL_KT 64 /* frequencies per tile */
#define BL_IB 2  /* rows of A per block */
#define BL_JB 4  /* rows of B per block */

static void load_plane_tile(const float *row, int64_t nk, int64_t k0, int64_t kt, float sign, float *re,
                            float *im, float *sum) {
    const float *pr = row + k0, *pi = row + nk + k0;
    for (int64_t k = 0; k < kt; ++k) {
        re[k] = pr[k];
        im[k] = sign * pi[k];
        sum[k] = re[k] + im[k];
    }
}

/* Returns 0, or -1 (nothing written) for a NULL args/operand/output pointer or a negative size or stride. */
int32_t semjpeg_bl_cmac_f32(const semjpeg_bl_cmac_args *args) {
    if (!args || !args->a || !args->b || !args->out || args->ni < 0 || args->nj < 0 || args->nr < 0 ||
        args->nk < 0 || args->a_si < 0 || args->a_sr < 0 || args->b_sj < 0 || args->b_sr < 0)
        return -1;
    const float *a = args->a, *b = args->b;
    float *out = args->out;
    const int64_t ni = args->ni, nj = args->nj, nr = args->nr, nk = args->nk;
    const int64_t a_si = args->a_si, a_sr = args->a_sr, b_sj = args->b_sj, b_sr = args->b_sr;
    const float sa = args->conj_a ? -1.0f : 1.0f, sb = args->conj_b ? -1.0f : 1.0f;
    float ar[BL_IB][BL_KT], ai[BL_IB][BL_KT], as[BL_IB][BL_KT];
    float br[BL_JB][BL_KT], bi[BL_JB][BL_KT], bs[BL_JB][BL_KT];
    float t1[BL_IB][BL_JB][BL_KT], t2[BL_IB][BL_JB][BL_KT], t3[BL_IB][BL_JB][BL_KT];

    for (int64_t k0 = 0; k0 < nk; k0 += BL_KT) {
        const int64_t kt = nk - k0 < BL_KT ? nk - k0 : BL_KT;
        for (int64_t i0 = 0; i0 < ni; i0 += BL_IB) {
            const int64_t ib = ni - i0 < BL_IB ? ni - i0 : BL_IB;
            for (int64_t j0 = 0; j0 < nj; j0 += BL_JB) {
                const int64_t jb = nj - j0 < BL_JB ? nj - j0 : BL_JB;
                memset(t1, 0, sizeof t1);
                memset(t2, 0, sizeof t2);
                memset(t3, 0, sizeof t3);
                for (int64_t r = 0; r < nr; ++r) {
                    for (int64_t ii = 0; ii < ib; ++ii)
                        load_plane_tile(a + ((i0 + ii) * a_si + r * a_sr) * 2 * nk, nk, k0, kt, sa, ar[ii], ai[ii],
                                        as[ii]);
                    for (int64_t jj = 0; jj < jb; ++jj)
                        load_plane_tile(b + ((j0 + jj) * b_sj + r * b_sr) * 2 * nk, nk, k0, kt, sb, br[jj], bi[jj],
                                        bs[jj]);
                    for (int64_t ii = 0; ii < ib; ++ii)
                        for (int64_t jj = 0; jj < jb; ++jj) {
                            float *restrict u1 = t1[ii][jj], *restrict u2 = t2[ii][jj], *restrict u3 = t3[ii][jj];
                            const float *restrict xr = ar[ii], *restrict xi = ai[ii], *restrict xs = as[ii];
                            const float *restrict yr = br[jj], *restrict yi = bi[jj], *restrict ys = bs[jj];
                            for (int64_t k = 0; k < kt; ++k) {
                                u1[k] += xr[k] * yr[k];
                                u2[k] += xi[k] * yi[k];
                                u3[k] += xs[k] * ys[k];
                            }
                        }
                }
                for (int64_t ii = 0; ii < ib; ++ii)
                    for (int64_t jj = 0; jj < jb; ++jj) {
                        float *o = out + (((i0 + ii) * nj + (j0 + jj)) * nk + k0) * 2;
                        for (int64_t k = 0; k < kt; ++k) {
                            o[2 * k] = t1[ii][jj][k] - t2[ii][jj][k];
                            o[2 * k + 1] = t3[ii][jj][k] - t1[ii][jj][k] - t2[ii][jj][k];
                        }
                    }
            }
        }
    }
    return 0;
}
