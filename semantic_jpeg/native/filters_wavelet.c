/* Kernels of the wavelet denoiser (paper 000 sec 4.7-4.8).
 *
 * filters_haar_forward / _inverse: one level of the 2-D orthonormal Haar (db1) transform of `planes` planes of
 * height x width, equal to pywt.dwt2(x, "db1", mode="symmetric") up to the sign of the detail bands: each
 * 2x2 block (a b; c d) gives (a+b+c+d)/2, (a+b-c-d)/2, (a-b+c-d)/2, (a-b-c+d)/2. An odd last row or column
 * is mirrored (symmetric extension), so bands are ceil(height/2) x ceil(width/2); the inverse drops it again.
 * filters_to_planes: interleaved HxWxC (uint8 or float32) -> C float32 planes, planes = matrix @ pixel * scale
 * (3x3 row-major for 3 channels, or NULL for none). filters_from_planes: the reverse, clipped to [0, 1] and, for a
 * uint8 destination, scaled by 255 and rounded half to even (numpy's rint). */
#include <stddef.h>
#include <stdint.h>
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

/* Round half to even for 0 <= x < 2^22 without libm: adding 1.5 * 2^23 leaves the float's rounding to the FPU. */
static inline float round_even(float x) {
    volatile float shifted = x + 12582912.0f;
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
