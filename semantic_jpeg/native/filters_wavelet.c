/* Kernels of the wavelet denoiser (paper 000 sec 4.7-4.8).
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

void filters_haar_forward(const float *src, float *approx, float *detail_rows, float *detail_cols, float *detail_diag,
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

void filters_haar_inverse(const float *approx, const float *detail_rows, const float *detail_cols,
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

static inline float clip01(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }

void filters_to_planes(const uint8_t *src, int32_t src_is_float, float *planes, int64_t pixels, int32_t channels,
                       const float *matrix, float scale) {
    const float *srcf = (const float *)src;
    if (channels == 3 && matrix) {
        float m[9];
        for (int i = 0; i < 9; i++) m[i] = matrix[i] * scale;
        float *p0 = planes, *p1 = planes + pixels, *p2 = planes + 2 * pixels;
        for (int64_t n = 0; n < pixels; n++) {
            float a, b, c;
            if (src_is_float) { a = srcf[3 * n]; b = srcf[3 * n + 1]; c = srcf[3 * n + 2]; }
            else { a = (float)src[3 * n]; b = (float)src[3 * n + 1]; c = (float)src[3 * n + 2]; }
            p0[n] = m[0] * a + m[1] * b + m[2] * c;
            p1[n] = m[3] * a + m[4] * b + m[5] * c;
            p2[n] = m[6] * a + m[7] * b + m[8] * c;
        }
        return;
    }
    for (int32_t c = 0; c < channels; c++) {
        float *plane = planes + (size_t)c * pixels;
        for (int64_t n = 0; n < pixels; n++)
            plane[n] = (src_is_float ? srcf[n * channels + c] : (float)src[n * channels + c]) * scale;
    }
}

void filters_from_planes(const float *planes, uint8_t *dst, int32_t dst_is_float, int64_t pixels, int32_t channels,
                         const float *matrix) {
    float *dstf = (float *)dst;
    if (channels == 3 && matrix) {
        const float *p0 = planes, *p1 = planes + pixels, *p2 = planes + 2 * pixels;
        const float *m = matrix;
        for (int64_t n = 0; n < pixels; n++) {
            float a = p0[n], b = p1[n], c = p2[n];
            float r0 = clip01(m[0] * a + m[1] * b + m[2] * c);
            float r1 = clip01(m[3] * a + m[4] * b + m[5] * c);
            float r2 = clip01(m[6] * a + m[7] * b + m[8] * c);
            if (dst_is_float) { dstf[3 * n] = r0; dstf[3 * n + 1] = r1; dstf[3 * n + 2] = r2; }
            else {
                dst[3 * n] = (uint8_t)round_even(r0 * 255.0f);
                dst[3 * n + 1] = (uint8_t)round_even(r1 * 255.0f);
                dst[3 * n + 2] = (uint8_t)round_even(r2 * 255.0f);
            }
        }
        return;
    }
    for (int32_t c = 0; c < channels; c++) {
        const float *plane = planes + (size_t)c * pixels;
        for (int64_t n = 0; n < pixels; n++) {
            float v = clip01(plane[n]);
            if (dst_is_float) dstf[n * channels + c] = v;
            else dst[n * channels + c] = (uint8_t)round_even(v * 255.0f);
        }
    }
}

/* Fused first level: interleaved pixels -> (matrix, scale) -> one Haar level, written as bands[4][channels][h2][w2]
 * (approx, rows, cols, diag), plus each detail band's sum of squares per channel, sum_squares[3][channels]
 * (what BayesShrink needs), in one pass over the image. */
static inline void pixels_to_haar_body(const uint8_t *src, int32_t src_is_float, int32_t height, int32_t width,
                                       int32_t channels, const float *matrix, float scale, float *bands,
                                       double *sum_squares) {
    const int32_t h2 = (height + 1) / 2, w2 = (width + 1) / 2;
    const size_t band_size = (size_t)h2 * w2, stride = (size_t)channels * band_size;
    const float *srcf = (const float *)src;
    float m[9], u8[256]; /* u8: exact uint8 -> float by table (faster than conversion instructions) */
    if (matrix) for (int i = 0; i < 9; i++) m[i] = matrix[i] * scale;
    for (int i = 0; i < 256; i++) u8[i] = (float)i;
    for (int i = 0; i < 3 * channels; i++) sum_squares[i] = 0.0;
    for (int32_t i = 0; i < h2; i++) {
        int32_t rows[2] = {2 * i, 2 * i + 1 < height ? 2 * i + 1 : 2 * i};
        double row_sums[3][4] = {{0}};
        for (int32_t j = 0; j < w2; j++) {
            int32_t cols[2] = {2 * j, 2 * j + 1 < width ? 2 * j + 1 : 2 * j};
            float v[4][4]; /* v[block position][channel] */
            for (int q = 0; q < 4; q++) {
                size_t at = ((size_t)rows[q >> 1] * width + cols[q & 1]) * channels;
                float x[4];
                for (int32_t c = 0; c < channels; c++) x[c] = src_is_float ? srcf[at + c] : u8[src[at + c]];
                for (int32_t c = 0; c < channels; c++)
                    v[q][c] = matrix ? m[3 * c] * x[0] + m[3 * c + 1] * x[1] + m[3 * c + 2] * x[2] : x[c] * scale;
            }
            size_t o = (size_t)i * w2 + j;
            for (int32_t c = 0; c < channels; c++) {
                float s0 = v[0][c] + v[1][c], s1 = v[2][c] + v[3][c], d0 = v[0][c] - v[1][c], d1 = v[2][c] - v[3][c];
                float lh = 0.5f * (s0 - s1), hl = 0.5f * (d0 + d1), hh = 0.5f * (d0 - d1);
                size_t at = (size_t)c * band_size + o;
                bands[at] = 0.5f * (s0 + s1);
                bands[stride + at] = lh;
                bands[2 * stride + at] = hl;
                bands[3 * stride + at] = hh;
                row_sums[0][c] += (double)lh * lh;
                row_sums[1][c] += (double)hl * hl;
                row_sums[2][c] += (double)hh * hh;
            }
        }
        for (int b = 0; b < 3; b++)
            for (int32_t c = 0; c < channels; c++) sum_squares[b * channels + c] += row_sums[b][c];
    }
}

void filters_pixels_to_haar(const uint8_t *src, int32_t src_is_float, int32_t height, int32_t width, int32_t channels,
                            const float *matrix, float scale, float *bands, double *sum_squares) {
    if (channels == 3 && matrix && !src_is_float) /* the common case, with constant loop bounds */
        pixels_to_haar_body(src, 0, height, width, 3, matrix, scale, bands, sum_squares);
    else
        pixels_to_haar_body(src, src_is_float, height, width, channels, matrix, scale, bands, sum_squares);
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

static inline void haar_to_pixels_body(const float *bands, int32_t height, int32_t width, int32_t channels,
                                       const float *thresholds, int32_t hard, const float *m, int mix, uint8_t *dst,
                                       int32_t dst_is_float) {
    const int32_t h2 = (height + 1) / 2, w2 = (width + 1) / 2;
    const size_t band_size = (size_t)h2 * w2, stride = (size_t)channels * band_size;
    float *dstf = (float *)dst;
    for (int32_t i = 0; i < h2; i++) {
        for (int32_t j = 0; j < w2; j++) {
            size_t o = (size_t)i * w2 + j;
            float v[4][4];
            for (int32_t c = 0; c < channels; c++) {
                size_t at = (size_t)c * band_size + o;
                float ll = bands[at];
                float lh = shrink(bands[stride + at], thresholds[c], hard);
                float hl = shrink(bands[2 * stride + at], thresholds[channels + c], hard);
                float hh = shrink(bands[3 * stride + at], thresholds[2 * channels + c], hard);
                float s0 = ll + lh, s1 = ll - lh, d0 = hl + hh, d1 = hl - hh;
                v[0][c] = 0.5f * (s0 + d0);
                v[1][c] = 0.5f * (s0 - d0);
                v[2][c] = 0.5f * (s1 + d1);
                v[3][c] = 0.5f * (s1 - d1);
            }
            int full = 2 * i + 1 < height && 2 * j + 1 < width;
            for (int q = 0; q < 4; q++) {
                int32_t y = 2 * i + (q >> 1), x = 2 * j + (q & 1);
                if (!full && (y >= height || x >= width)) continue;
                size_t at = ((size_t)y * width + x) * channels;
                float r[4];
                if (mix) {
                    r[0] = m[0] * v[q][0] + m[1] * v[q][1] + m[2] * v[q][2];
                    r[1] = m[3] * v[q][0] + m[4] * v[q][1] + m[5] * v[q][2];
                    r[2] = m[6] * v[q][0] + m[7] * v[q][1] + m[8] * v[q][2];
                } else {
                    for (int32_t c = 0; c < channels; c++) r[c] = v[q][c];
                }
                for (int32_t c = 0; c < channels; c++) {
                    float value = clip01(r[c]);
                    if (dst_is_float) dstf[at + c] = value;
                    else dst[at + c] = (uint8_t)round_even(value * 255.0f);
                }
            }
        }
    }
}

/* Fused last step: threshold the first level's detail bands (thresholds[3][channels]; soft, or hard when hard != 0),
 * inverse Haar, matrix back to the output colours, clip to [0, 1] and store interleaved (uint8: x255, rint). */
void filters_haar_to_pixels(const float *bands, int32_t height, int32_t width, int32_t channels,
                            const float *thresholds, int32_t hard, const float *matrix, uint8_t *dst,
                            int32_t dst_is_float) {
    if (channels == 3 && matrix && !dst_is_float) /* the common case, with constant loop bounds */
        haar_to_pixels_body(bands, height, width, 3, thresholds, hard, matrix, 1, dst, 0);
    else
        haar_to_pixels_body(bands, height, width, channels, thresholds, hard, matrix, matrix && channels == 3, dst,
                            dst_is_float);
}

/* Mean square of each channel's plane of `count` values (planes[channels][count]). */
static void mean_squares(const float *planes, int32_t channels, size_t count, double *out) {
    for (int32_t c = 0; c < channels; c++) {
        const float *p = planes + (size_t)c * count;
        double total = 0.0;
        for (size_t n = 0; n < count; n++) total += (double)p[n] * p[n];
        out[c] = total / (double)count;
    }
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

/* The whole db1 denoiser for a known noise level (the paper's setting) in one call: colour conversion fused with
 * the first Haar level, `levels` levels, each detail band thresholded (BayesShrink: method 0, VisuShrink: 1; soft,
 * or hard when hard != 0) with variance[c] = sigma_c^2, inverse, conversion back fused with the first level.
 * Same arithmetic as the step-by-step path (filters_pixels_to_haar ... filters_haar_to_pixels). Returns 0, -1 on
 * bad arguments, -2 when out of memory. */
int32_t filters_haar_denoise(const uint8_t *src, int32_t src_is_float, int32_t height, int32_t width,
                             int32_t channels, const float *to_planes, float scale, const float *to_pixels,
                             int32_t levels, const double *variance, int32_t method, double visu_factor,
                             int32_t hard, uint8_t *dst, int32_t dst_is_float) {
    if (height < 1 || width < 1 || channels < 1 || channels > 4 || levels < 1 || levels > 30 || method < 0 ||
        method > 1)
        return -1;
    int32_t hs[32], ws[32]; /* band sizes of each level */
    size_t offsets[32], total = 0;
    hs[0] = height;
    ws[0] = width;
    for (int32_t l = 1; l <= levels; l++) {
        hs[l] = (hs[l - 1] + 1) / 2;
        ws[l] = (ws[l - 1] + 1) / 2;
        offsets[l] = total;
        total += 4 * (size_t)channels * hs[l] * ws[l];
    }
    float *buffer = malloc(sizeof(float) * total);
    if (!buffer) return -2;
    double energy[3 * 4], mean_square[4];
    float first_thresholds[3 * 4], thresholds[4];
    filters_pixels_to_haar(src, src_is_float, height, width, channels, to_planes, scale, buffer + offsets[1], energy);
    for (int32_t b = 0; b < 3; b++) {
        for (int32_t c = 0; c < channels; c++) mean_square[c] = energy[b * channels + c] / ((double)hs[1] * ws[1]);
        band_thresholds(method, mean_square, variance, visu_factor, channels, first_thresholds + b * channels);
    }
    for (int32_t l = 2; l <= levels; l++) {
        size_t band = (size_t)channels * hs[l] * ws[l];
        float *prev = buffer + offsets[l - 1], *cur = buffer + offsets[l];
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
        float *cur = buffer + offsets[l];
        filters_haar_inverse(cur, cur + band, cur + 2 * band, cur + 3 * band, buffer + offsets[l - 1], channels,
                             hs[l - 1], ws[l - 1]);
    }
    filters_haar_to_pixels(buffer + offsets[1], height, width, channels, first_thresholds, hard, to_pixels, dst,
                           dst_is_float);
    free(buffer);
    return 0;
}
