/* Kernels of the wavelet denoiser (Prakash 2019 sec 4.7-4.8).
 *
 * filters_haar_forward / _inverse: one level of the 2-D orthonormal Haar (db1) transform of `planes` planes of
 * height x width, equal to pywt.dwt2(x, "db1", mode="symmetric") up to the sign of the detail bands: each
 * 2x2 block (a b; c d) gives (a+b+c+d)/2, (a+b-c-d)/2, (a-b+c-d)/2, (a-b-c+d)/2. An odd last row or column
 * is mirrored (symmetric extension), so bands are ceil(height/2) x ceil(width/2); the inverse drops it again.
 * filters_to_planes: interleaved HxWxC (uint8 or float32) -> C float32 planes, planes = matrix @ pixel * scale
 * (3x3 row-major for 3 channels, or NULL for none). filters_from_planes: the reverse, clipped to [0, 1] and, for a
 * uint8 destination, scaled by 255 and rounded half to even (numpy's rint). */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include "filters_wavelet.h"
#include "internal/simd.h"

SIMD_CLONES void filters_haar_forward(const float *src, float *approx, float *detail_rows, float *detail_cols, float *detail_diag,
                          int32_t planes, int32_t height, int32_t width) {
    const int32_t h2 = (height + 1) / 2, w2 = (width + 1) / 2;
    for (int32_t p = 0; p < planes; p++) {
        const float *x = src + (size_t)p * height * width;
        size_t band = (size_t)p * h2 * w2;
        for (int32_t i = 0; i < h2; i++) {
            const float *row0 = x + (size_t)(2 * i) * width;
            const float *row1 = 2 * i + 1 < height ? row0 + width : row0;
            size_t o = band + (size_t)i * w2;
            for (int32_t j = 0; j < w2; j++) {
                int32_t j1 = 2 * j + 1 < width ? 2 * j + 1 : 2 * j;
                float a = row0[2 * j], b = row0[j1], c = row1[2 * j], d = row1[j1];
                float s0 = a + b, s1 = c + d, d0 = a - b, d1 = c - d;
                approx[o + j] = 0.5f * (s0 + s1);
                detail_rows[o + j] = 0.5f * (s0 - s1);
                detail_cols[o + j] = 0.5f * (d0 + d1);
                detail_diag[o + j] = 0.5f * (d0 - d1);
            }
        }
    }
}

SIMD_CLONES void filters_haar_inverse(const float *approx, const float *detail_rows, const float *detail_cols,
                          const float *detail_diag, float *dst, int32_t planes, int32_t height, int32_t width) {
    const int32_t h2 = (height + 1) / 2, w2 = (width + 1) / 2;
    for (int32_t p = 0; p < planes; p++) {
        float *x = dst + (size_t)p * height * width;
        size_t band = (size_t)p * h2 * w2;
        for (int32_t i = 0; i < h2; i++) {
            float *row0 = x + (size_t)(2 * i) * width;
            float *row1 = 2 * i + 1 < height ? row0 + width : 0;
            size_t o = band + (size_t)i * w2;
            for (int32_t j = 0; j < w2; j++) {
                float ll = approx[o + j], lh = detail_rows[o + j], hl = detail_cols[o + j], hh = detail_diag[o + j];
                float s0 = ll + lh, s1 = ll - lh, d0 = hl + hh, d1 = hl - hh;
                int has_right = 2 * j + 1 < width;
                row0[2 * j] = 0.5f * (s0 + d0);
                if (has_right) row0[2 * j + 1] = 0.5f * (s0 - d0);
                if (row1) {
                    row1[2 * j] = 0.5f * (s1 + d1);
                    if (has_right) row1[2 * j + 1] = 0.5f * (s1 - d1);
                }
            }
        }
    }
}

/* Round half to even for 0 <= x < 2^22 without libm: adding 1.5 * 2^23 leaves the float's rounding to the FPU.
 * Where floats are evaluated in wider registers (x87), a volatile store forces the rounding to float. */
static inline float round_even(float x) {
#if defined(__FLT_EVAL_METHOD__) && __FLT_EVAL_METHOD__ == 0
    float shifted = x + 12582912.0f;
#else
    volatile float shifted = x + 12582912.0f;
#endif
    return shifted - 12582912.0f;
}

/* Clip to [0, 1]; NaN gives 0 (written so that a NaN fails the first test), so a NaN from upstream can never
 * reach the float -> int conversion of to_byte, where it would be undefined behaviour. */
static inline float clip01(float x) { return x > 0.0f ? (x < 1.0f ? x : 1.0f) : 0.0f; }

/* x in [0, 1] -> round_even(255 x) as a byte (through int32, which vectorises). */
static inline uint8_t to_byte(float x) { return (uint8_t)(int32_t)round_even(x * 255.0f); }

/* ---- Interleaved rows <-> float planes of `padded` samples per channel (padded >= width; the sample after
 * the last is the mirrored column when padded > width) ---- */

/* Image row y -> planes[channels][padded]: matrix (3 channels, already multiplied by the scale) or scale. */
static inline void load_row(const uint8_t *src, int32_t src_is_float, int64_t y, int64_t width, int32_t channels,
                            const float *m, float scale, int64_t padded, float *restrict planes) {
    size_t at = (size_t)y * width * channels;
    const uint8_t *restrict p = src + at;
    const float *restrict pf = (const float *)src + at;
    if (m && channels == 3) {
        float *restrict a = planes, *restrict b = planes + padded, *restrict c = planes + 2 * padded;
        if (src_is_float)
            for (int64_t x = 0; x < width; x++) { a[x] = pf[3 * x]; b[x] = pf[3 * x + 1]; c[x] = pf[3 * x + 2]; }
        else
            for (int64_t x = 0; x < width; x++) { a[x] = p[3 * x]; b[x] = p[3 * x + 1]; c[x] = p[3 * x + 2]; }
        for (int64_t x = 0; x < width; x++) { /* in place: each sample reads only its own column */
            float r = a[x], g = b[x], bl = c[x];
            a[x] = m[0] * r + m[1] * g + m[2] * bl;
            b[x] = m[3] * r + m[4] * g + m[5] * bl;
            c[x] = m[6] * r + m[7] * g + m[8] * bl;
        }
    } else {
        for (int32_t ch = 0; ch < channels; ch++) {
            float *restrict o = planes + (size_t)ch * padded;
            for (int64_t x = 0; x < width; x++)
                o[x] = (src_is_float ? pf[(size_t)x * channels + ch] : (float)p[(size_t)x * channels + ch]) * scale;
        }
    }
    if (padded > width)
        for (int32_t ch = 0; ch < channels; ch++) planes[(size_t)ch * padded + width] = planes[(size_t)ch * padded + width - 1];
}

/* planes[channels][padded] -> image row y: matrix (3 channels) or as they are, clipped to [0, 1], stored
 * interleaved (uint8: x255, rounded half to even). */
static inline void store_row(const float *planes, int64_t padded, int64_t y, int64_t width, int32_t channels,
                             const float *m, uint8_t *dst, int32_t dst_is_float) {
    size_t at = (size_t)y * width * channels;
    uint8_t *restrict d = dst + at;
    float *restrict df = (float *)dst + at;
    if (m && channels == 3) {
        const float *restrict a = planes, *restrict b = planes + padded, *restrict c = planes + 2 * padded;
#define MIXED(k, x) clip01(m[3 * (k)] * a[x] + m[3 * (k) + 1] * b[x] + m[3 * (k) + 2] * c[x])
        if (dst_is_float)
            for (int64_t x = 0; x < width; x++) {
                df[3 * x] = MIXED(0, x);
                df[3 * x + 1] = MIXED(1, x);
                df[3 * x + 2] = MIXED(2, x);
            }
        else
            for (int64_t x = 0; x < width; x++) {
                d[3 * x] = to_byte(MIXED(0, x));
                d[3 * x + 1] = to_byte(MIXED(1, x));
                d[3 * x + 2] = to_byte(MIXED(2, x));
            }
#undef MIXED
        return;
    }
    for (int32_t ch = 0; ch < channels; ch++) {
        const float *restrict p = planes + (size_t)ch * padded;
        if (dst_is_float)
            for (int64_t x = 0; x < width; x++) df[(size_t)x * channels + ch] = clip01(p[x]);
        else
            for (int64_t x = 0; x < width; x++) d[(size_t)x * channels + ch] = to_byte(clip01(p[x]));
    }
}

/* The whole image as one row of `pixels` samples: the same kernels as the fused Haar levels. */
SIMD_CLONES void filters_to_planes(const uint8_t *src, int32_t src_is_float, float *planes, int64_t pixels,
                                   int32_t channels, const float *matrix, float scale) {
    float m[9];
    if (matrix) for (int i = 0; i < 9; i++) m[i] = matrix[i] * scale;
    load_row(src, src_is_float, 0, pixels, channels, matrix ? m : NULL, scale, pixels, planes);
}

SIMD_CLONES void filters_from_planes(const float *planes, uint8_t *dst, int32_t dst_is_float, int64_t pixels,
                                     int32_t channels, const float *matrix) {
    store_row(planes, pixels, 0, pixels, channels, matrix, dst, dst_is_float);
}

/* ---- The first level, fused with the colour conversion, one pair of image rows at a time ----
 * Rows are held as float planes of `padded` = 2 ceil(width / 2) samples per channel. */

/* Sum of x^2 in double (four partial sums, so that it vectorises). */
static inline double sum_squares(const float *restrict x, size_t n) {
    double s[4] = {0.0, 0.0, 0.0, 0.0};
    size_t j = 0;
    for (; j + 4 <= n; j += 4)
        for (int k = 0; k < 4; k++) s[k] += (double)x[j + k] * x[j + k];
    for (; j < n; j++) s[0] += (double)x[j] * x[j];
    return (s[0] + s[1]) + (s[2] + s[3]);
}

/* Fused first level: interleaved pixels -> (matrix, scale) -> one Haar level, written as bands[4][channels][h2][w2]
 * (approx, rows, cols, diag), plus each detail band's sum of squares per channel, sum_squares[3][channels]
 * (what BayesShrink needs), in one pass over the image. Returns 0, or -2 when out of memory. */
SIMD_CLONES int32_t filters_pixels_to_haar(const uint8_t *src, int32_t src_is_float, int32_t height, int32_t width,
                                           int32_t channels, const float *matrix, float scale, float *bands,
                                           double *sum_squares_out) {
    const int32_t h2 = (height + 1) / 2, w2 = (width + 1) / 2, padded = 2 * w2;
    const size_t band_size = (size_t)h2 * w2, stride = (size_t)channels * band_size;
    float m[9];
    if (matrix) for (int i = 0; i < 9; i++) m[i] = matrix[i] * scale;
    float *rows = malloc(sizeof(float) * 2 * (size_t)channels * padded);
    if (!rows) return -2;
    for (int i = 0; i < 3 * channels; i++) sum_squares_out[i] = 0.0;
    for (int32_t i = 0; i < h2; i++) {
        float *top = rows, *bottom = rows + (size_t)channels * padded;
        load_row(src, src_is_float, 2 * i, width, channels, matrix ? m : NULL, scale, padded, top);
        if (2 * i + 1 < height) load_row(src, src_is_float, 2 * i + 1, width, channels, matrix ? m : NULL, scale,
                                         padded, bottom);
        else bottom = top; /* odd height: the last row mirrored */
        for (int32_t c = 0; c < channels; c++) {
            const float *restrict r0 = top + (size_t)c * padded, *restrict r1 = bottom + (size_t)c * padded;
            float *restrict ll = bands + (size_t)c * band_size + (size_t)i * w2, *restrict lh = ll + stride;
            float *restrict hl = ll + 2 * stride, *restrict hh = ll + 3 * stride;
            for (int32_t j = 0; j < w2; j++) {
                float a = r0[2 * j], b = r0[2 * j + 1], cc = r1[2 * j], d = r1[2 * j + 1];
                float s0 = a + b, s1 = cc + d, d0 = a - b, d1 = cc - d;
                ll[j] = 0.5f * (s0 + s1);
                lh[j] = 0.5f * (s0 - s1);
                hl[j] = 0.5f * (d0 + d1);
                hh[j] = 0.5f * (d0 - d1);
            }
            sum_squares_out[c] += sum_squares(lh, (size_t)w2);
            sum_squares_out[channels + c] += sum_squares(hl, (size_t)w2);
            sum_squares_out[2 * channels + c] += sum_squares(hh, (size_t)w2);
        }
    }
    free(rows);
    return 0;
}

/* Soft: sign(x) max(|x| - t, 0); hard: x where |x| >= t else 0. Written without branches (the signs of noisy
 * coefficients are unpredictable): fabsf/copysignf are bit operations, the selects compile to max/blend. */
static inline float shrink(float x, float t, int32_t hard) {
    float magnitude = fabsf(x);
    if (hard) return magnitude < t ? 0.0f : x;
    float kept = magnitude - t;
    kept = kept > 0.0f ? kept : 0.0f;
    return copysignf(kept, x);
}

/* One channel's pair of output rows from one row of its four first-level bands (details thresholded by t). */
static inline void inverse_rows(const float *restrict ll, const float *restrict lh, const float *restrict hl,
                                const float *restrict hh, const float t[3], int32_t hard, int32_t w2,
                                float *restrict o0, float *restrict o1) {
    for (int32_t j = 0; j < w2; j++) {
        float h = shrink(lh[j], t[0], hard), v = shrink(hl[j], t[1], hard), g = shrink(hh[j], t[2], hard);
        float s0 = ll[j] + h, s1 = ll[j] - h, d0 = v + g, d1 = v - g;
        o0[2 * j] = 0.5f * (s0 + d0);
        o0[2 * j + 1] = 0.5f * (s0 - d0);
        o1[2 * j] = 0.5f * (s1 + d1);
        o1[2 * j + 1] = 0.5f * (s1 - d1);
    }
}

/* Fused last step: threshold the first level's detail bands (thresholds[3][channels]; soft, or hard when hard != 0),
 * inverse Haar, matrix back to the output colours, clip to [0, 1] and store interleaved (uint8: x255, rint).
 * Returns 0, or -2 when out of memory. */
SIMD_CLONES int32_t filters_haar_to_pixels(const float *bands, int32_t height, int32_t width, int32_t channels,
                                           const float *thresholds, int32_t hard, const float *matrix, uint8_t *dst,
                                           int32_t dst_is_float) {
    const int32_t h2 = (height + 1) / 2, w2 = (width + 1) / 2, padded = 2 * w2;
    const size_t band_size = (size_t)h2 * w2, stride = (size_t)channels * band_size;
    float *rows = malloc(sizeof(float) * 2 * (size_t)channels * padded);
    if (!rows) return -2;
    float *top = rows, *bottom = rows + (size_t)channels * padded;
    for (int32_t i = 0; i < h2; i++) {
        for (int32_t c = 0; c < channels; c++) {
            const float *restrict ll = bands + (size_t)c * band_size + (size_t)i * w2, *restrict lh = ll + stride;
            const float *restrict hl = ll + 2 * stride, *restrict hh = ll + 3 * stride;
            float t[3] = {thresholds[c], thresholds[channels + c], thresholds[2 * channels + c]};
            float *o0 = top + (size_t)c * padded, *o1 = bottom + (size_t)c * padded;
            if (hard) inverse_rows(ll, lh, hl, hh, t, 1, w2, o0, o1); /* constant `hard`: no branch in the loop */
            else inverse_rows(ll, lh, hl, hh, t, 0, w2, o0, o1);
        }
        store_row(top, padded, 2 * i, width, channels, matrix && channels == 3 ? matrix : NULL, dst, dst_is_float);
        if (2 * i + 1 < height)
            store_row(bottom, padded, 2 * i + 1, width, channels, matrix && channels == 3 ? matrix : NULL, dst,
                      dst_is_float);
    }
    free(rows);
    return 0;
}

/* Mean square of each channel's plane of `count` values (planes[channels][count]). */
static void mean_squares(const float *planes, int32_t channels, size_t count, double *out) {
    for (int32_t c = 0; c < channels; c++) out[c] = sum_squares(planes + (size_t)c * count, count) / (double)count;
}

/* Per channel threshold of one detail band: BayesShrink sigma^2 / sqrt(max(E[d^2] - sigma^2, eps)) (eq. 4.6), or
 * VisuShrink sigma sqrt(2 ln N) (visu_factor = sqrt(2 ln N)). */
static void band_thresholds(int32_t method, const double *mean_square, const double *variance, double visu_factor,
                            int32_t channels, float *out) {
    for (int32_t c = 0; c < channels; c++) {
        if (method == 1) {
            out[c] = (float)(sqrt(variance[c]) * visu_factor);
        } else {
            double spread = mean_square[c] - variance[c];
            out[c] = (float)(variance[c] / sqrt(spread > 1.1920928955078125e-07 ? spread : 1.1920928955078125e-07));
        }
    }
}

/* Band sizes of `levels` Haar levels of a height x width image (hs[l] x ws[l] for level l >= 1, hs[0] x ws[0] the
 * image) and each level's offset in the workspace of filters_haar_denoise; returns the workspace's float count. */
static size_t haar_layout(int32_t height, int32_t width, int32_t channels, int32_t levels, int32_t hs[32],
                          int32_t ws[32], size_t offsets[32]) {
    size_t total = 0;
    hs[0] = height;
    ws[0] = width;
    for (int32_t l = 1; l <= levels; l++) {
        hs[l] = (hs[l - 1] + 1) / 2;
        ws[l] = (ws[l - 1] + 1) / 2;
        offsets[l] = total;
        total += 4 * (size_t)channels * hs[l] * ws[l];
    }
    return total;
}

static int32_t haar_denoise_arguments_valid(int32_t height, int32_t width, int32_t channels, int32_t levels) {
    return height >= 1 && width >= 1 && channels >= 1 && channels <= 4 && levels >= 1 && levels <= 30;
}

/* Floats of workspace filters_haar_denoise needs (the bands of all levels), or -1 on bad arguments. */
int64_t filters_haar_denoise_workspace(int32_t height, int32_t width, int32_t channels, int32_t levels) {
    int32_t hs[32], ws[32];
    size_t offsets[32];
    if (!haar_denoise_arguments_valid(height, width, channels, levels)) return -1;
    return (int64_t)haar_layout(height, width, channels, levels, hs, ws, offsets);
}

/* The whole db1 denoiser for a known noise level (the paper's setting) in one call: colour conversion fused with
 * the first Haar level, `levels` levels, each detail band thresholded (BayesShrink: method 0, VisuShrink: 1; soft,
 * or hard when hard != 0) with variance[c] = sigma_c^2, inverse, conversion back fused with the first level.
 * Same arithmetic as the step-by-step path (filters_pixels_to_haar ... filters_haar_to_pixels). `workspace` holds
 * filters_haar_denoise_workspace() floats; the caller keeps it between calls, so that a fresh allocation's page
 * faults (as costly as the denoising at 224x224) are not paid on every image. The arguments come in one struct
 * (filters_wavelet.h). Returns 0, -1 on bad arguments, -2 when out of memory. */
int32_t filters_haar_denoise(const filters_haar_denoise_args *a) {
    if (!a || !a->src || !a->dst || !a->variance ||
        !haar_denoise_arguments_valid(a->height, a->width, a->channels, a->levels) || a->method < 0 ||
        a->method > 1 || !a->workspace)
        return -1;
    const uint8_t *src = a->src;
    uint8_t *dst = a->dst;
    const int32_t src_is_float = a->src_is_float, dst_is_float = a->dst_is_float, height = a->height;
    const int32_t width = a->width, channels = a->channels, levels = a->levels, method = a->method, hard = a->hard;
    const float *to_planes = a->to_planes, *to_pixels = a->to_pixels;
    const float scale = a->scale;
    const double *variance = a->variance;
    const double visu_factor = a->visu_factor;
    float *workspace = a->workspace;
    int32_t hs[32], ws[32]; /* band sizes of each level */
    size_t offsets[32];
    haar_layout(height, width, channels, levels, hs, ws, offsets);
    double energy[3 * 4], mean_square[4];
    float first_thresholds[3 * 4], thresholds[4];
    if (filters_pixels_to_haar(src, src_is_float, height, width, channels, to_planes, scale, workspace + offsets[1],
                               energy))
        return -2;
    for (int32_t b = 0; b < 3; b++) {
        for (int32_t c = 0; c < channels; c++) mean_square[c] = energy[b * channels + c] / ((double)hs[1] * ws[1]);
        band_thresholds(method, mean_square, variance, visu_factor, channels, first_thresholds + b * channels);
    }
    for (int32_t l = 2; l <= levels; l++) {
        size_t band = (size_t)channels * hs[l] * ws[l];
        float *prev = workspace + offsets[l - 1], *cur = workspace + offsets[l];
        filters_haar_forward(prev, cur, cur + band, cur + 2 * band, cur + 3 * band, channels, hs[l - 1], ws[l - 1]);
        for (int32_t b = 1; b <= 3; b++) {
            float *details = cur + b * band;
            size_t count = (size_t)hs[l] * ws[l];
            mean_squares(details, channels, count, mean_square);
            band_thresholds(method, mean_square, variance, visu_factor, channels, thresholds);
            for (int32_t c = 0; c < channels; c++)
                for (size_t n = 0; n < count; n++)
                    details[c * count + n] = shrink(details[c * count + n], thresholds[c], hard);
        }
    }
    for (int32_t l = levels; l >= 2; l--) {
        size_t band = (size_t)channels * hs[l] * ws[l];
        float *cur = workspace + offsets[l];
        filters_haar_inverse(cur, cur + band, cur + 2 * band, cur + 3 * band, workspace + offsets[l - 1], channels,
                             hs[l - 1], ws[l - 1]);
    }
    return filters_haar_to_pixels(workspace + offsets[1], height, width, channels, first_thresholds, hard, to_pixels,
                                  dst, dst_is_float);
}
