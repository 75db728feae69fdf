/* Native block kernels of the semantic JPEG codec (Prakash et al., DCC 2017, Algorithm 1; thesis sec. 2.4, eq. 2.7).
 *
 * A "cell" is the unit that takes one saliency level: an 8x8 block, or the MCU (16x16 for 4:2:0) when
 * chroma is subsampled, so that every block of an MCU, luma and chroma, is coded at the same level.
 * Coefficient arrays are [blocks_h][blocks_w][64] in natural (row-major) order, as jpeglib reads them: float
 * for the exact DCT, int16 for quantised coefficients.
 * Sections: cell levels and the mosaic of Algorithm 1; the forward transform (colour conversion, downsampling,
 * DCT); per-block requantisation; baseline Huffman entropy coding; the drivers, which run the last three
 * one MCU row at a time (a single encode, or a rate-control trial on a kept float DCT) or one stage at a time
 * over whole-image arrays (the two-pass reference the fused drivers are tested against).
 * Error codes: enum semjpeg_error in codec_blocks.h.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "codec_blocks.h"
#include "internal/simd.h" /* SIMD_CLONES: an AVX2 copy of the per-MCU-row work; a file does not depend on the CPU */
/* RDO_AVX2: an explicit eight-blocks-per-vector AVX2 copy of the RDO from the nearest values, chosen at run time
 * on CPUs that have AVX2; off where SIMD_CLONES is off (so the baseline build of tests/test_native_simd.py
 * checks that it writes the same bytes as the scalar loop). */
#if defined(__x86_64__) && !defined(SEMANTIC_JPEG_NO_SIMD_CLONES) && (defined(__GNUC__) || defined(__clang__))
#define RDO_AVX2 1
#include <immintrin.h>
#else
#define RDO_AVX2 0
#endif
#if defined(__SSE2__)
#include <emmintrin.h>
#include <xmmintrin.h>
#endif

/* Level of each cell = floor(mean saliency * levels), clipped to [0, levels-1]. Edge cells average only
 * the pixels that exist. Returns 0, or -1 on bad arguments. */
int semjpeg_block_levels(const float *saliency, int height, int width, int cell_h, int cell_w, int levels,
                         uint8_t *out) {
    if (height <= 0 || width <= 0 || cell_h <= 0 || cell_w <= 0 || levels <= 0 || levels > 255) return -1;
    int cells_h = (height + cell_h - 1) / cell_h, cells_w = (width + cell_w - 1) / cell_w;
    double *column = malloc(sizeof(double) * (size_t)width); /* sums down the cell row, one per pixel column */
    if (!column) return -1;
    for (int cy = 0; cy < cells_h; cy++) {
        int y0 = cy * cell_h, y1 = y0 + cell_h < height ? y0 + cell_h : height;
        for (int x = 0; x < width; x++) column[x] = saliency[(size_t)y0 * width + x];
        for (int y = y0 + 1; y < y1; y++) {
            const float *restrict row = saliency + (size_t)y * width;
            for (int x = 0; x < width; x++) column[x] += row[x];
        }
        for (int cx = 0; cx < cells_w; cx++) {
            int x0 = cx * cell_w, x1 = x0 + cell_w < width ? x0 + cell_w : width;
            double sum = 0.0;
            for (int x = x0; x < x1; x++) sum += column[x];
            int level = (int)floor(sum / ((double)(y1 - y0) * (x1 - x0)) * levels);
            out[(size_t)cy * cells_w + cx] = (uint8_t)(level < 0 ? 0 : level >= levels ? levels - 1 : level);
        }
    }
    free(column);
    return 0;
}

/* Mean of the height x width map over each of blocks_h x blocks_w blocks of block_h x block_w pixels (out:
 * double, row-major), float for float as rdo.block_means sums in numpy: each block's rows added one after another
 * in float (a part-block at the bottom adds (missing rows) x the map's last row, rounded to float, after the rows
 * it has), then the row sums of its columns the same way (the right edge likewise), then the float sum over
 * block_h x block_w in double. 0.45 -> 0.24 ms for the luma and chroma means of a 1024x768 4:2:0 image (best of
 * 200, a busy 2-core machine; each pass is bound by reading the map). Returns 0, SEMJPEG_BAD_ARGUMENT or
 * SEMJPEG_NO_MEMORY. */
int semjpeg_block_means(const float *map, int height, int width, int blocks_h, int blocks_w, int block_h,
                        int block_w, double *out) {
    if (!map || !out || height <= 0 || width <= 0 || blocks_h <= 0 || blocks_w <= 0 || block_h <= 0 || block_w <= 0)
        return SEMJPEG_BAD_ARGUMENT;
    float *rows = malloc(sizeof(float) * (size_t)width); /* one block row's sums down each pixel column */
    if (!rows) return SEMJPEG_NO_MEMORY;
    const float *last_row = map + (size_t)(height - 1) * width;
    const double area = (double)block_h * block_w;
    for (int by = 0; by < blocks_h; by++) {
        int y0 = by * block_h, present = height - y0 < block_h ? height - y0 : block_h;
        if (present <= 0) {
            for (int x = 0; x < width; x++) rows[x] = 0.0f;
            present = 0;
        } else {
            memcpy(rows, map + (size_t)y0 * width, sizeof(float) * (size_t)width);
            for (int y = y0 + 1; y < y0 + present; y++) {
                const float *restrict row = map + (size_t)y * width;
                for (int x = 0; x < width; x++) rows[x] += row[x];
            }
        }
        if (present < block_h) {
            const float missing = (float)(block_h - present);
            for (int x = 0; x < width; x++) {
                float extra = missing * last_row[x]; /* rounded on its own, as numpy does: never fused */
                rows[x] += extra;
            }
        }
        for (int bx = 0; bx < blocks_w; bx++) {
            int x0 = bx * block_w, cols = width - x0 < block_w ? width - x0 : block_w;
            float sum = 0.0f;
            if (cols > 0) {
                sum = rows[x0];
                for (int x = x0 + 1; x < x0 + cols; x++) sum += rows[x];
            } else {
                cols = 0;
            }
            if (cols < block_w) {
                float extra = (float)(block_w - cols) * rows[width - 1];
                sum += extra;
            }
            out[(size_t)by * blocks_w + bx] = (double)sum / area;
        }
    }
    free(rows);
    return 0;
}

/* Algorithm 1, lines 2-5: each cell of the output takes its pixels from the decoded image of its level.
 * stack: n_images x height x width x channels; level_to_image maps a level to its index in the stack. */
int semjpeg_mosaic_select(const uint8_t *stack, int n_images, int height, int width, int channels,
                          const uint8_t *cell_level, const uint8_t *level_to_image, int cell_h, int cell_w,
                          uint8_t *out) {
    if (n_images <= 0 || height <= 0 || width <= 0 || channels <= 0 || cell_h <= 0 || cell_w <= 0) return -1;
    int cells_w = (width + cell_w - 1) / cell_w;
    size_t plane = (size_t)height * width * channels;
    for (int y = 0; y < height; y++) {
        const uint8_t *levels_row = cell_level + (size_t)(y / cell_h) * cells_w;
        size_t row_off = (size_t)y * width * channels;
        for (int cx = 0; cx < cells_w; cx++) {
            int img = level_to_image[levels_row[cx]];
            if (img >= n_images) return -1;
            int x0 = cx * cell_w, x1 = x0 + cell_w < width ? x0 + cell_w : width;
            size_t off = row_off + (size_t)x0 * channels;
            memcpy(out + off, stack + (size_t)img * plane + off, (size_t)(x1 - x0) * channels);
        }
    }
    return 0;
}

/* ---- Forward transform: what a JPEG encoder does before quantisation (ITU T.81 A.3.3, JFIF colour) ----
 *
 * The image is padded to whole MCUs by repeating its last row and column (as libjpeg does), converted to
 * level-shifted YCbCr (JFIF: Y = .299 R + .587 G + .114 B, ...) or kept as is, each component is
 * box-downsampled by (hmax / samp_h, vmax / samp_v), and every block gets the orthonormal 8x8 DCT-II,
 *     F(u,v) = C(u) C(v) / 4  sum_xy f(x,y) cos((2x+1) u pi / 16) cos((2y+1) v pi / 16),
 * in float, without the integer rounding of libjpeg's pipeline. Works one MCU row at a time. */

/* One 8-point DCT pass (Arai-Agui-Nakajima, as libjpeg's jfdctflt.c) on a group of independent lanes at
 * once: d[k] holds sample k of every lane, so each statement is one vector operation when T is a vector
 * type. Outputs are scaled by 8 * aan(u) (undone by aan_scale's factors). */
#define AAN_PASS(T, d)                                                                                     \
    do {                                                                                                   \
        T t0 = d[0] + d[7], t7 = d[0] - d[7], t1 = d[1] + d[6], t6 = d[1] - d[6];                          \
        T t2 = d[2] + d[5], t5 = d[2] - d[5], t3 = d[3] + d[4], t4 = d[3] - d[4];                          \
        T t10 = t0 + t3, t13 = t0 - t3, t11 = t1 + t2, t12 = t1 - t2;                                      \
        d[0] = t10 + t11;                                                                                  \
        d[4] = t10 - t11;                                                                                  \
        T z1 = (t12 + t13) * 0.707106781f;                                                                 \
        d[2] = t13 + z1;                                                                                   \
        d[6] = t13 - z1;                                                                                   \
        t10 = t4 + t5;                                                                                     \
        t11 = t5 + t6;                                                                                     \
        t12 = t6 + t7;                                                                                     \
        T z5 = (t10 - t12) * 0.382683433f, z2 = t10 * 0.541196100f + z5, z4 = t12 * 1.306562965f + z5;    \
        T z3 = t11 * 0.707106781f, z11 = t7 + z3, z13 = t7 - z3;                                           \
        d[5] = z13 + z2;                                                                                   \
        d[3] = z13 - z2;                                                                                   \
        d[1] = z11 + z4;                                                                                   \
        d[7] = z11 - z4;                                                                                   \
    } while (0)

/* scale[u * 8 + v] = 1 / (8 aan(u) aan(v)), aan(0) = 1, aan(k) = sqrt(2) cos(k pi / 16): turns the AAN
 * outputs into the orthonormal DCT. */
static void aan_scale(float scale[64]) {
    double aan[8];
    for (int k = 0; k < 8; k++) aan[k] = k == 0 ? 1.0 : sqrt(2.0) * cos(k * 3.14159265358979323846 / 16.0);
    for (int u = 0; u < 8; u++)
        for (int v = 0; v < 8; v++) scale[u * 8 + v] = (float)(1.0 / (8.0 * aan[u] * aan[v]));
}

#if defined(__SSE2__) && (defined(__GNUC__) || defined(__clang__))
/* 8x8 block held as two column halves of 8 row vectors: left[r] = row r, columns 0-3; right[r]: 4-7. */
static inline void transpose8_sse(__m128 left[8], __m128 right[8]) {
    __m128 a[4] = {left[0], left[1], left[2], left[3]}, b[4] = {right[0], right[1], right[2], right[3]};
    __m128 c[4] = {left[4], left[5], left[6], left[7]}, d[4] = {right[4], right[5], right[6], right[7]};
    _MM_TRANSPOSE4_PS(a[0], a[1], a[2], a[3]);
    _MM_TRANSPOSE4_PS(b[0], b[1], b[2], b[3]);
    _MM_TRANSPOSE4_PS(c[0], c[1], c[2], c[3]);
    _MM_TRANSPOSE4_PS(d[0], d[1], d[2], d[3]);
    for (int i = 0; i < 4; i++) { /* [A B; C D]^T = [A^T C^T; B^T D^T] */
        left[i] = a[i];
        right[i] = c[i];
        left[i + 4] = b[i];
        right[i + 4] = d[i];
    }
}

/* out (natural order, u = vertical frequency) = the orthonormal DCT of the 8x8 block at src (row stride
 * `stride` floats): a column pass, a transpose, a column pass and a transpose, all in registers. */
static inline void dct_block(const float *restrict src, int stride, const float *restrict scale,
                             float *restrict out) {
    __m128 left[8], right[8];
    for (int r = 0; r < 8; r++) {
        left[r] = _mm_loadu_ps(src + (size_t)r * stride);
        right[r] = _mm_loadu_ps(src + (size_t)r * stride + 4);
    }
    AAN_PASS(__m128, left);
    AAN_PASS(__m128, right);
    transpose8_sse(left, right);
    AAN_PASS(__m128, left);
    AAN_PASS(__m128, right);
    transpose8_sse(left, right);
    for (int u = 0; u < 8; u++) {
        _mm_storeu_ps(out + 8 * u, left[u] * _mm_loadu_ps(scale + 8 * u));
        _mm_storeu_ps(out + 8 * u + 4, right[u] * _mm_loadu_ps(scale + 8 * u + 4));
    }
}
#else
/* out (natural order, u = vertical frequency) = the orthonormal DCT of the 8x8 block at src (row stride
 * `stride` floats). */
static inline void dct_block(const float *restrict src, int stride, const float *restrict scale,
                             float *restrict out) {
    float d[8][8], col[8];
    for (int r = 0; r < 8; r++) memcpy(d[r], src + (size_t)r * stride, sizeof d[r]);
    for (int x = 0; x < 8; x++) { /* columns: d[u][x] */
        for (int r = 0; r < 8; r++) col[r] = d[r][x];
        AAN_PASS(float, col);
        for (int r = 0; r < 8; r++) d[r][x] = col[r];
    }
    for (int u = 0; u < 8; u++) { /* rows: d[u][v] */
        AAN_PASS(float, d[u]);
        for (int v = 0; v < 8; v++) out[u * 8 + v] = d[u][v] * scale[u * 8 + v];
    }
}
#endif

#if RDO_AVX2
/* 8x8 transpose of float rows r[0..7] in place. */
__attribute__((target("avx2"))) static inline void transpose8_avx(__m256 r[8]) {
    __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    r[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
    r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
    r[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
    r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
    r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
    r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
    r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
    r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

/* dct_block with AVX: a row of the block per vector, the same AAN passes and scaling in the same order (so the
 * same bits as the SSE and scalar versions; tests/test_native_simd.py compares the files). The forward DCT of
 * a 1024x768 image, colour conversion included: 1.29 -> 1.09 ms (best of 40, same output hash). */
__attribute__((target("avx2"))) static void dct_block_avx2(const float *restrict src, int stride,
                                                           const float *restrict scale, float *restrict out) {
    __m256 r[8];
    for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(src + (size_t)i * stride);
    AAN_PASS(__m256, r);
    transpose8_avx(r);
    AAN_PASS(__m256, r);
    transpose8_avx(r);
    for (int u = 0; u < 8; u++) _mm256_storeu_ps(out + 8 * u, _mm256_mul_ps(r[u], _mm256_loadu_ps(scale + 8 * u)));
}
#define DCT_BLOCK(avx2, src, stride, scale, out) \
    ((avx2) ? dct_block_avx2(src, stride, scale, out) : dct_block(src, stride, scale, out))
#else
#define DCT_BLOCK(avx2, src, stride, scale, out) dct_block(src, stride, scale, out)
#endif

/* Colour conversion of component c as out = k[0] R + k[1] G + k[2] B + k[3] (JFIF YCbCr, level-shifted). */
static const float YCBCR[3][4] = {{0.299f, 0.587f, 0.114f, -128.0f},
                                  {-0.168735892f, -0.331264108f, 0.5f, 0.0f},
                                  {0.5f, -0.418687589f, -0.081312411f, 0.0f}};

/* One MCU row of the image as float planes: `rows` source rows (8 vmax) of `pw` samples (whole MCUs) per
 * channel, rows and columns past the image repeating its last ones. Box sums for one pair of downsampling
 * factors are kept until other factors are asked for (Cb and Cr share them). */
typedef struct {
    int channels, rows, pw;
    float *source; /* channels x rows x pw */
    float *boxed;  /* channels x (rows / fv) x (pw / fh): sums of fv x fh boxes of `source` */
    float *plane;  /* one component, downsampled and converted: rows x pw at most */
    int box_fh, box_fv;
} McuRow;

/* Split the image rows y0 .. y0 + rows - 1 (clamped to the image) into the float planes of `m`. */
static inline void load_mcu_row(McuRow *m, const uint8_t *image, int height, int width, int y0) {
    size_t plane = (size_t)m->rows * m->pw;
    for (int r = 0; r < m->rows; r++) {
        int y = y0 + r < height ? y0 + r : height - 1;
        const uint8_t *restrict p = image + (size_t)y * width * m->channels;
        float *restrict d0 = m->source + (size_t)r * m->pw;
        if (m->channels == 1) {
            for (int x = 0; x < width; x++) d0[x] = p[x];
        } else {
            float *restrict d1 = d0 + plane, *restrict d2 = d1 + plane;
            for (int x = 0; x < width; x++) {
                d0[x] = p[3 * x];
                d1[x] = p[3 * x + 1];
                d2[x] = p[3 * x + 2];
            }
        }
        for (int ch = 0; ch < m->channels; ch++) {
            float *row = m->source + ch * plane + (size_t)r * m->pw;
            for (int x = width; x < m->pw; x++) row[x] = row[width - 1];
        }
    }
    m->box_fh = m->box_fv = 0;
}

/* The planes of fv x fh box sums (sums of small integers: exact in float); the source itself for 1 x 1. */
static inline const float *box_sums(McuRow *m, int fh, int fv) {
    if (fh == 1 && fv == 1) return m->source;
    if (m->box_fh == fh && m->box_fv == fv) return m->boxed;
    int out_rows = m->rows / fv, cw = m->pw / fh;
    for (int ch = 0; ch < m->channels; ch++)
        for (int r = 0; r < out_rows; r++) {
            const float *restrict a = m->source + ((size_t)ch * m->rows + (size_t)r * fv) * m->pw;
            float *restrict o = m->boxed + ((size_t)ch * out_rows + r) * cw;
            if (fh == 2 && fv == 2) {
                const float *restrict b = a + m->pw;
                for (int x = 0; x < cw; x++) o[x] = a[2 * x] + a[2 * x + 1] + b[2 * x] + b[2 * x + 1];
            } else {
                for (int x = 0; x < cw; x++) {
                    float sum = 0.0f;
                    for (int dy = 0; dy < fv; dy++)
                        for (int dx = 0; dx < fh; dx++) sum += a[(size_t)dy * m->pw + (size_t)x * fh + dx];
                    o[x] = sum;
                }
            }
        }
    m->box_fh = fh;
    m->box_fv = fv;
    return m->boxed;
}

/* m->plane = component with conversion k, box-downsampled by (fh, fv): rows / fv rows of pw / fh samples.
 * Conversion is linear, so converting the box mean equals downsampling the converted pixels. */
static inline void convert_component(McuRow *m, const float k[4], int fh, int fv) {
    const float *sums = box_sums(m, fh, fv);
    size_t n = (size_t)(m->rows / fv) * (m->pw / fh);
    float box = 1.0f / (float)(fh * fv), k0 = k[0] * box, k1 = k[1] * box, k2 = k[2] * box, off = k[3];
    const float *restrict a = sums, *restrict b = sums + n, *restrict c = sums + 2 * n;
    float *restrict o = m->plane;
    if (m->channels == 1) {
        for (size_t i = 0; i < n; i++) o[i] = k0 * a[i] + off;
    } else {
        /* summed in the order earlier versions used, so that files stay byte-identical across versions */
        for (size_t i = 0; i < n; i++) o[i] = k0 * a[i] + k1 * b[i] + (k2 * c[i] + off);
    }
}

/* ---- Per-block requantisation: the DCT-domain counterpart of Algorithm 1 ----
 *
 * A block at level n keeps exactly the coefficients its level's quantiser (step q_n) would keep, each at the
 * frame's precision (step q_f):
 *     out = |raw| < deadzone * q_n ? 0 : round(raw * (1 / q_f))   (float32, halves rounded away from zero)
 * deadzone 0.5 keeps exactly what round(raw / q_n) keeps; rate control raises it to reach a file size that
 * lies between two steps of the integer quantisation tables.
 * Rounding survivors to multiples of q_n instead would add error without saving bits, because they are
 * written in units of q_f either way; the rate saving of a coarse level comes from its zeros.
 * Block (by, bx) belongs to cell (by / per_cell_v, bx / per_cell_h); blocks past the cell grid take the last
 * cell. */
typedef struct {
    const uint8_t *cell_level;
    int cells_h, cells_w, per_cell_v, per_cell_h, levels;
    float inverse[64];  /* 1 / q_f */
    float *zero_below;  /* levels x 64: deadzone * q_n */
} Quantiser;

/* level_tables: levels x 64 steps, frame_table: 64 steps, natural order. Returns 0 or a SEMJPEG_ error; on
 * success quantiser_free must follow. */
static int quantiser_init(Quantiser *q, const uint8_t *cell_level, int cells_h, int cells_w, int per_cell_v,
                          int per_cell_h, int levels, const uint16_t *level_tables, const uint16_t *frame_table,
                          float deadzone) {
    if (cells_h <= 0 || cells_w <= 0 || levels <= 0 || levels > 255 || per_cell_v <= 0 || per_cell_h <= 0 ||
        !(deadzone >= 0.0f && deadzone <= 1.0f))
        return SEMJPEG_BAD_ARGUMENT;
    for (int i = 0; i < 64; i++)
        if (frame_table[i] == 0) return SEMJPEG_BAD_ARGUMENT;
    for (int i = 0; i < levels * 64; i++)
        if (level_tables[i] == 0) return SEMJPEG_BAD_ARGUMENT;
    for (size_t i = 0; i < (size_t)cells_h * cells_w; i++)
        if (cell_level[i] >= levels) return SEMJPEG_BAD_ARGUMENT;
    q->zero_below = malloc(sizeof(float) * 64 * (size_t)levels);
    if (!q->zero_below) return SEMJPEG_NO_MEMORY;
    q->cell_level = cell_level;
    q->cells_h = cells_h;
    q->cells_w = cells_w;
    q->per_cell_v = per_cell_v;
    q->per_cell_h = per_cell_h;
    q->levels = levels;
    for (int i = 0; i < 64; i++) q->inverse[i] = 1.0f / (float)frame_table[i];
    for (int i = 0; i < levels * 64; i++) q->zero_below[i] = deadzone * (float)level_tables[i];
    return 0;
}

static void quantiser_free(Quantiser *q) { free(q->zero_below); }

static inline void quantise_block(const Quantiser *q, int by, int bx, const float *restrict c, int16_t *restrict o) {
    int cy = by / q->per_cell_v, cx = bx / q->per_cell_h;
    if (cy >= q->cells_h) cy = q->cells_h - 1;
    if (cx >= q->cells_w) cx = q->cells_w - 1;
    const float *restrict h = q->zero_below + 64 * q->cell_level[(size_t)cy * q->cells_w + cx];
    for (int i = 0; i < 64; i++) { /* branch-free so that it vectorises */
        float x = c[i] * q->inverse[i];
        int keep = fabsf(c[i]) >= h[i];
        o[i] = (int16_t)(keep * (int)(x + copysignf(0.5f, x)));
    }
}

/* ---- Baseline Huffman entropy coding (ITU T.81 Annex F.1.2), interleaved MCUs ---- */

static const uint8_t ZIGZAG[64] = {0,  1,  8,  16, 9,  2,  3,  10, 17, 24, 32, 25, 18, 11, 4,  5,
                                   12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6,  7,  14, 21, 28,
                                   35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51,
                                   58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63};

typedef struct {
    uint8_t *out;
    int64_t len, capacity;
    uint64_t acc; /* bit accumulator: the low `nbits` bits are pending, older bits above are ignored */
    int nbits;
    int error;
} BitWriter;

static void put_byte(BitWriter *w, uint8_t b) {
    if (w->len + 2 > w->capacity) { w->error = 1; return; }
    w->out[w->len++] = b;
    if (b == 0xFF) w->out[w->len++] = 0x00; /* byte stuffing */
}

/* Write the oldest 32 pending bits: four bytes at once unless one of them is 0xFF (then stuffed). */
static void flush32(BitWriter *w) {
    w->nbits -= 32;
    uint32_t word = (uint32_t)(w->acc >> w->nbits), inv = ~word;
    if (((inv - 0x01010101u) & ~inv & 0x80808080u) == 0 && w->len + 4 <= w->capacity) {
        w->out[w->len] = (uint8_t)(word >> 24);
        w->out[w->len + 1] = (uint8_t)(word >> 16);
        w->out[w->len + 2] = (uint8_t)(word >> 8);
        w->out[w->len + 3] = (uint8_t)word;
        w->len += 4;
        return;
    }
    for (int shift = 24; shift >= 0; shift -= 8) put_byte(w, (uint8_t)(word >> shift));
}

/* Append `size` (<= 32) bits; `code` holds them in its low bits and nothing above. */
static inline void put_bits(BitWriter *w, uint32_t code, int size) {
    w->acc = (w->acc << size) | code;
    w->nbits += size;
    if (w->nbits >= 32) flush32(w);
}

/* bit_length of a magnitude below 2^31, without a branch for 0 (where __builtin_clz is undefined). */
static inline int bit_length_of_magnitude(unsigned m) {
#if defined(__GNUC__) || defined(__clang__)
    return 31 - __builtin_clz(2 * m + 1);
#else
    int n = 0;
    while (m) { n++; m >>= 1; }
    return n;
#endif
}

static inline int bit_length(int v) { return bit_length_of_magnitude((unsigned)(v < 0 ? -v : v)); }


/* Index of the lowest set bit of a nonzero mask. */
static inline int lowest_bit(uint64_t mask) {
#if defined(__GNUC__) || defined(__clang__)
    return __builtin_ctzll(mask);
#else
    int k = 0;
    while (!(mask & 1)) { mask >>= 1; k++; }
    return k;
#endif
}

/* Emit a Huffman symbol followed by the n low bits of v (F.1.2.1: negative values as v-1 in n bits), in
 * one write; a symbol the table lacks (size 0) is an error, never a silently wrong stream. */
static inline void put_symbol_value(BitWriter *w, const uint32_t *code, const uint8_t *size, int symbol, int v,
                                    int n) {
    if (size[symbol] == 0) { w->error = 2; return; }
    uint32_t bits = (uint32_t)(v < 0 ? v - 1 : v) & ((1u << n) - 1);
    put_bits(w, (code[symbol] << n) | bits, size[symbol] + n);
}

/* zigzag_bits[j][b]: the bits of byte j of a natural-order mask (coefficient 8j + i in bit i of b) moved to
 * their zigzag positions. */
typedef uint64_t ZigzagBits[8][256];

static void zigzag_bits_init(ZigzagBits t) {
    int position[64];
    for (int k = 0; k < 64; k++) position[ZIGZAG[k]] = k;
    for (int j = 0; j < 8; j++)
        for (int b = 0; b < 256; b++) {
            uint64_t m = 0;
            for (int i = 0; i < 8; i++)
                if (b >> i & 1) m |= (uint64_t)1 << position[8 * j + i];
            t[j][b] = m;
        }
}

/* Bit k set when the coefficient at zigzag position k is nonzero. */
static inline uint64_t zigzag_nonzero(ZigzagBits t, const int16_t *blk) {
    uint64_t mask = 0;
#if defined(__SSE2__)
    const __m128i zero = _mm_setzero_si128();
    for (int j = 0; j < 4; j++) { /* 16 coefficients -> 16 bits of the natural-order mask */
        __m128i a = _mm_loadu_si128((const __m128i *)(blk + 16 * j));
        __m128i b = _mm_loadu_si128((const __m128i *)(blk + 16 * j + 8));
        unsigned bits = ~(unsigned)_mm_movemask_epi8(_mm_packs_epi16(_mm_cmpeq_epi16(a, zero), _mm_cmpeq_epi16(b, zero)));
        mask |= t[2 * j][bits & 0xFF] | t[2 * j + 1][(bits >> 8) & 0xFF];
    }
#else
    for (int j = 0; j < 8; j++) {
        unsigned b = 0;
        for (int i = 0; i < 8; i++) b |= (unsigned)(blk[8 * j + i] != 0) << i;
        mask |= t[j][b];
    }
#endif
    return mask;
}

/* The bits of each AC symbol with its value, for the values -32..31 after each run 0..15, in one table:
 * codes[run][32 + v] = (code length + n) << 27 | (code << n) | the n value bits (n = bit_length(v)); 0 when
 * the table lacks the symbol (or v = 0). One lookup replaces the size category, the sign handling (whose
 * unpredictable branches cost more than the rest of a symbol) and the table checks; 99.9% of the values of a
 * photograph at quality 75-90 are in the range. */
enum { AC_FAST_RANGE = 32 };
typedef uint32_t AcCodes[16][2 * AC_FAST_RANGE];

static void ac_codes_init(AcCodes t, const uint32_t *code, const uint8_t *size) {
    for (int run = 0; run < 16; run++)
        for (int i = 0; i < 2 * AC_FAST_RANGE; i++) {
            int v = i - AC_FAST_RANGE, n = bit_length(v), symbol = (run << 4) | n, length = size[symbol];
            uint32_t bits = (uint32_t)(v < 0 ? v - 1 : v) & ((1u << n) - 1);
            /* codes longer than 16 bits, or with bits above their length, are left to the generic path */
            int usable = v && length > 0 && length <= 16 && code[symbol] < (1u << length);
            t[run][i] = usable ? (uint32_t)(length + n) << 27 | code[symbol] << n | bits : 0;
        }
}

/* One block: the DC difference, then (run, size) symbols for the nonzero AC coefficients in zigzag order,
 * visited through a bit mask of the nonzero ones (as libjpeg-turbo's coder does). This is the checked
 * version (room for every byte, symbol and range checks); encode_block below takes it near the end of the
 * output buffer only. */
static void encode_block_checked(BitWriter *w, ZigzagBits zz, const int16_t *blk, int *last_dc, const uint32_t *dcc,
                                 const uint8_t *dcs, const uint32_t *acc, const uint8_t *acs) {
    int diff = blk[0] - *last_dc;
    *last_dc = blk[0];
    int n = bit_length(diff);
    if (n > 11) { w->error = 3; return; }
    put_symbol_value(w, dcc, dcs, n, diff, n);
    int previous = 0; /* zigzag position of the last coefficient coded */
    for (uint64_t nonzero = zigzag_nonzero(zz, blk) & ~(uint64_t)1; nonzero; nonzero &= nonzero - 1) {
        int k = lowest_bit(nonzero), run = k - previous - 1, v = blk[ZIGZAG[k]];
        for (; run > 15; run -= 16) put_symbol_value(w, acc, acs, 0xF0, 0, 0);
        n = bit_length(v);
        if (n > 10) { w->error = 3; return; }
        put_symbol_value(w, acc, acs, (run << 4) | n, v, n);
        previous = k;
    }
    if (previous < 63) put_symbol_value(w, acc, acs, 0x00, 0, 0); /* EOB */
}

/* Output bytes one block can take: at most 27 + 63 x 26 + 3 x 16 + 16 bits (DC, every AC value with the longest
 * code, the ZRLs of runs summing to at most 63, EOB) = 217 bytes, doubled by stuffing, plus 4 pending. */
enum { BLOCK_ROOM = 512 };

/* Big-endian store of a 32-bit word whose bytes are not 0xFF (compilers merge the four stores). */
static inline uint8_t *store_word(uint8_t *out, uint32_t word) {
    out[0] = (uint8_t)(word >> 24);
    out[1] = (uint8_t)(word >> 16);
    out[2] = (uint8_t)(word >> 8);
    out[3] = (uint8_t)word;
    return out + 4;
}

/* A word with a 0xFF byte, each 0xFF followed by a stuffed 0x00 (about one word in 64). */
static uint8_t *store_word_stuffed(uint8_t *out, uint32_t word) {
    for (int shift = 24; shift >= 0; shift -= 8) {
        uint8_t b = (uint8_t)(word >> shift);
        *out++ = b;
        if (b == 0xFF) *out++ = 0x00;
    }
    return out;
}

/* Append `size` bits (`bits` holds them and nothing above) to the block coder's registers acc/nbits/out,
 * writing the oldest 32 pending bits when there are 32. */
#define PUT_BITS(bits, size)                                                                      \
    do {                                                                                          \
        acc = (acc << (size)) | (bits);                                                           \
        nbits += (size);                                                                          \
        if (nbits >= 32) {                                                                        \
            nbits -= 32;                                                                          \
            uint32_t word_ = (uint32_t)(acc >> nbits), inv_ = ~word_;                             \
            if (((inv_ - 0x01010101u) & ~inv_ & 0x80808080u) == 0) out = store_word(out, word_);  \
            else out = store_word_stuffed(out, word_);                                            \
        }                                                                                         \
    } while (0)

/* encode_block_checked's bits, taken when the block fits in the output buffer whatever it holds (BLOCK_ROOM):
 * no byte needs a room check, the bit accumulator, its count and the output position stay in registers, and
 * the AC symbols of small values come from the AcCodes table (`fast`). A missing symbol is skipped and an
 * out-of-range value ends the block, with the same error as the checked version. Coding a 1024x768 4:2:0 scan
 * (18432 blocks, 229k symbols, 150 kB; best of 100 on a busy 2-core machine): 2.26 ms with the checked
 * version, 2.28 ms with the registers alone (the stores were not the cost), 1.21 ms with the AcCodes lookup
 * (the sign branches were). */
static void encode_block(BitWriter *w, ZigzagBits zz, const uint32_t *fast, const int16_t *blk, int *last_dc,
                         const uint32_t *dcc, const uint8_t *dcs, const uint32_t *acc_code, const uint8_t *acs) {
    if (w->len + BLOCK_ROOM > w->capacity) {
        encode_block_checked(w, zz, blk, last_dc, dcc, dcs, acc_code, acs);
        return;
    }
    uint64_t acc = w->acc;
    int nbits = w->nbits, error = 0;
    uint8_t *out = w->out + w->len;
    int diff = blk[0] - *last_dc, sign = -(diff < 0); /* without branches on the sign (unpredictable) */
    *last_dc = blk[0];
    int n = bit_length_of_magnitude((unsigned)((diff ^ sign) - sign));
    if (n > 11) { error = 3; goto done; }
    if (!dcs[n]) error = 2;
    else PUT_BITS((dcc[n] << n) | ((uint32_t)(diff + sign) & ((1u << n) - 1)), dcs[n] + n);
    int previous = 0; /* zigzag position of the last coefficient coded */
    for (uint64_t nonzero = zigzag_nonzero(zz, blk) & ~(uint64_t)1; nonzero; nonzero &= nonzero - 1) {
        int k = lowest_bit(nonzero), run = k - previous - 1, v = blk[ZIGZAG[k]];
        if (run > 15) {
            if (!acs[0xF0]) error = 2;
            else
                for (; run > 15; run -= 16) PUT_BITS(acc_code[0xF0], acs[0xF0]);
            run &= 15;
        }
        previous = k;
        unsigned index = (unsigned)(v + AC_FAST_RANGE);
        uint32_t code = index < 2 * AC_FAST_RANGE ? fast[(run << 6) | index] : 0;
        if (code) {
            PUT_BITS(code & 0x07FFFFFFu, (int)(code >> 27));
            continue;
        }
        n = bit_length(v); /* a larger value, or a symbol the table lacks */
        if (n > 10) { error = 3; goto done; }
        int symbol = (run << 4) | n;
        if (!acs[symbol]) error = 2;
        else PUT_BITS((acc_code[symbol] << n) | ((uint32_t)(v < 0 ? v - 1 : v) & ((1u << n) - 1)), acs[symbol] + n);
    }
    if (previous < 63) { /* EOB */
        if (!acs[0x00]) error = 2;
        else PUT_BITS(acc_code[0x00], acs[0x00]);
    }
done:
    w->acc = acc;
    w->nbits = nbits;
    w->len = out - w->out;
    if (error) w->error = error;
}

/* The symbols encode_block would write, counted (libjpeg's encode_mcu_gather): DC size categories into
 * dc_freq, AC (run, size), ZRL and EOB symbols into ac_freq. */
static void count_block(BitWriter *w, ZigzagBits zz, const int16_t *blk, int *last_dc, int64_t *dc_freq,
                        int64_t *ac_freq) {
    int diff = blk[0] - *last_dc;
    *last_dc = blk[0];
    int n = bit_length(diff);
    if (n > 11) { w->error = 3; return; }
    dc_freq[n]++;
    int previous = 0;
    for (uint64_t nonzero = zigzag_nonzero(zz, blk) & ~(uint64_t)1; nonzero; nonzero &= nonzero - 1) {
        int k = lowest_bit(nonzero), run = k - previous - 1, v = blk[ZIGZAG[k]];
        for (; run > 15; run -= 16) ac_freq[0xF0]++;
        n = bit_length(v);
        if (n > 10) { w->error = 3; return; }
        ac_freq[(run << 4) | n]++;
        previous = k;
    }
    if (previous < 63) ac_freq[0x00]++;
}

/* One interleaved baseline scan (single component: blocks in raster order), coded one MCU row at a time so
 * that the fused drivers below never hold more than one MCU row of quantised coefficients. */
typedef struct {
    BitWriter w;
    int n_components, mcus_h, last_dc[4];
    const int *blocks_h, *blocks_w, *samp_h, *samp_v;
    const uint32_t **dc_code, **ac_code;
    const uint8_t **dc_size, **ac_size;
    uint64_t (*zigzag)[256]; /* ZigzagBits, followed in the same allocation by the AcCodes of each component */
    const uint32_t *ac_fast[4];       /* component c's AcCodes, flat (NULL: counting) */
    int64_t *dc_freq[4], *ac_freq[4]; /* when set: count symbols (257 per table) instead of writing bits */
} Scan;

/* Returns 0, or SEMJPEG_NO_MEMORY. */
static int scan_init(Scan *s, int n_components, const int *blocks_h, const int *blocks_w, const int *samp_h,
                     const int *samp_v, const uint32_t **dc_code, const uint8_t **dc_size, const uint32_t **ac_code,
                     const uint8_t **ac_size, int mcus_h, uint8_t *out, int64_t capacity) {
    int coding = ac_code && ac_size;
    Scan init = {{out, 0, capacity, 0, 0, 0}, n_components, mcus_h, {0, 0, 0, 0}, blocks_h, blocks_w, samp_h,
                 samp_v, dc_code, ac_code, dc_size, ac_size,
                 malloc(sizeof(ZigzagBits) + (coding ? (size_t)n_components * sizeof(AcCodes) : 0)), {0}, {0}, {0}};
    *s = init;
    if (!s->zigzag) return SEMJPEG_NO_MEMORY;
    zigzag_bits_init(s->zigzag);
    AcCodes *tables = (AcCodes *)(s->zigzag + 8);
    for (int c = 0; coding && c < n_components; c++) {
        int same = -1; /* components sharing a table share its codes (Cb and Cr) */
        for (int j = 0; j < c && same < 0; j++)
            if (ac_code[j] == ac_code[c] && ac_size[j] == ac_size[c]) same = j;
        if (same < 0) ac_codes_init(tables[c], ac_code[c], ac_size[c]);
        s->ac_fast[c] = same < 0 ? tables[c][0] : s->ac_fast[same];
    }
    return 0;
}

static inline void scan_block(Scan *s, int c, const int16_t *blk) {
    if (s->dc_freq[c])
        count_block(&s->w, s->zigzag, blk, &s->last_dc[c], s->dc_freq[c], s->ac_freq[c]);
    else
        encode_block(&s->w, s->zigzag, s->ac_fast[c], blk, &s->last_dc[c], s->dc_code[c], s->dc_size[c],
                     s->ac_code[c], s->ac_size[c]);
}

/* Code MCU row `my`. rows[c] holds component c's block rows my * samp_v[c] onwards, blocks_w[c] blocks each
 * (rows past blocks_h[c] are not read). Blocks past a component's edge inside the last MCU are dummy blocks
 * (DC repeated, AC zero; decoders discard them). */
static void scan_mcu_row(Scan *s, int my, int16_t *const *rows) {
    BitWriter *w = &s->w;
    if (s->n_components == 1) {
        for (int bx = 0; bx < s->blocks_w[0] && !w->error; bx++) scan_block(s, 0, rows[0] + (size_t)bx * 64);
        return;
    }
    /* MCUs whose blocks all lie inside every component (all but the last MCU row and column, usually): the
     * blocks of one MCU as (component, offset in its rows at mx = 0, step per MCU), without edge tests
     * (a 1024x768 4:2:0 scan: 1.23 -> 1.14 ms, best of 100) */
    enum { MAX_SLOTS = 64 };
    int slot_c[MAX_SLOTS], n_slots = 0, inside = s->mcus_h;
    size_t slot_offset[MAX_SLOTS], slot_step[MAX_SLOTS];
    for (int c = 0; c < s->n_components; c++) {
        if (s->samp_h[c] < 1 || s->samp_v[c] < 1 || (my + 1) * s->samp_v[c] > s->blocks_h[c]) inside = 0;
        else if (s->blocks_w[c] / s->samp_h[c] < inside) inside = s->blocks_w[c] / s->samp_h[c];
        for (int v = 0; v < s->samp_v[c]; v++)
            for (int h = 0; h < s->samp_h[c]; h++) {
                if (n_slots == MAX_SLOTS) { inside = 0; continue; }
                slot_c[n_slots] = c;
                slot_offset[n_slots] = ((size_t)v * s->blocks_w[c] + h) * 64;
                slot_step[n_slots++] = (size_t)s->samp_h[c] * 64;
            }
    }
    int mx = 0;
    for (; mx < inside && !w->error; mx++)
        for (int i = 0; i < n_slots; i++) scan_block(s, slot_c[i], rows[slot_c[i]] + slot_offset[i] + mx * slot_step[i]);
    int16_t dummy[64];
    for (; mx < s->mcus_h && !w->error; mx++)
        for (int c = 0; c < s->n_components; c++)
            for (int v = 0; v < s->samp_v[c]; v++)
                for (int h = 0; h < s->samp_h[c]; h++) {
                    int by = my * s->samp_v[c] + v, bx = mx * s->samp_h[c] + h;
                    const int16_t *blk;
                    if (by < s->blocks_h[c] && bx < s->blocks_w[c]) {
                        blk = rows[c] + ((size_t)v * s->blocks_w[c] + bx) * 64;
                    } else {
                        memset(dummy, 0, sizeof dummy);
                        dummy[0] = (int16_t)s->last_dc[c];
                        blk = dummy;
                    }
                    scan_block(s, c, blk);
                }
}

/* Pad the last byte with 1-bits and flush; returns the scan's length or a negative SEMJPEG_ error. */
static int64_t scan_finish(Scan *s) {
    BitWriter *w = &s->w;
    int pad = (8 - w->nbits % 8) % 8;
    put_bits(w, (1u << pad) - 1, pad);
    while (w->nbits >= 8) {
        w->nbits -= 8;
        put_byte(w, (uint8_t)(w->acc >> w->nbits));
    }
    free(s->zigzag);
    s->zigzag = NULL;
    if (w->error == 1) return SEMJPEG_NO_ROOM;
    if (w->error == 2) return SEMJPEG_NO_SYMBOL;
    if (w->error == 3) return SEMJPEG_OUT_OF_RANGE;
    return w->len;
}

/* One MCU row of quantised coefficients per component: samp_v[c] x blocks_w[c] blocks. Returns 0 or
 * SEMJPEG_NO_MEMORY; row_buffers_free must follow. */
static int row_buffers_init(int16_t *rows[4], int n, const int *samp_v, const int *blocks_w) {
    int rc = 0;
    for (int c = 0; c < n; c++) {
        rows[c] = malloc(sizeof(int16_t) * 64 * (size_t)samp_v[c] * blocks_w[c]);
        if (!rows[c]) rc = SEMJPEG_NO_MEMORY;
    }
    return rc;
}

static void row_buffers_free(int16_t *rows[4], int n) {
    for (int c = 0; c < n; c++) free(rows[c]);
}

/* Quantisers for each component; a component's cell holds per_cell_v x per_cell_h of its blocks (its
 * sampling factors when there are several components, else 1 x 1). Returns 0 or a negative SEMJPEG_ error;
 * on error nothing is left to free. */
static int quantisers_init(Quantiser *q, int n, const int *samp_h, const int *samp_v, const uint8_t *cell_level,
                           int cells_h, int cells_w, int levels, const uint16_t **level_tables,
                           const uint16_t **frame_tables, float deadzone) {
    for (int c = 0; c < n; c++) {
        int rc = quantiser_init(&q[c], cell_level, cells_h, cells_w, n > 1 ? samp_v[c] : 1, n > 1 ? samp_h[c] : 1,
                                levels, level_tables[c], frame_tables[c], deadzone);
        if (rc) {
            while (c--) quantiser_free(&q[c]);
            return rc;
        }
    }
    return 0;
}

/* ---- The drivers: forward transform, requantisation and entropy coding, alone or fused ---- */

typedef struct {
    const uint8_t *image;
    int height, width, channels, to_ycbcr, hmax, vmax;
    const int *samp_h, *samp_v, *blocks_h, *blocks_w;
    float **coefs;               /* float DCT of every block, or */
    const Quantiser *quantisers; /* requantise each block into `rows` (one MCU row) and code it with `scan` */
    int16_t **rows;
    Scan *scan;
    float scale[64];
} Transform;

/* Colour conversion, downsampling and DCT of MCU row `my`; then either the float blocks are stored, or they
 * are requantised and the row is entropy-coded. */
SIMD_CLONES static void transform_mcu_row(const Transform *t, McuRow *m, int my) {
    float block[64];
#if RDO_AVX2
    const int avx2 = __builtin_cpu_supports("avx2");
#else
    const int avx2 = 0;
#endif
    load_mcu_row(m, t->image, t->height, t->width, my * m->rows);
    for (int c = 0; c < t->channels; c++) {
        float k[4] = {0.0f, 0.0f, 0.0f, -128.0f};
        if (t->to_ycbcr) memcpy(k, YCBCR[c], sizeof k);
        else k[c] = 1.0f;
        int fh = t->hmax / t->samp_h[c], fv = t->vmax / t->samp_v[c], cw = m->pw / fh;
        convert_component(m, k, fh, fv);
        for (int v = 0; v < t->samp_v[c]; v++) {
            int by = my * t->samp_v[c] + v;
            if (by >= t->blocks_h[c]) break;
            for (int bx = 0; bx < t->blocks_w[c]; bx++) {
                const float *src = m->plane + (size_t)v * 8 * cw + (size_t)bx * 8;
                if (t->quantisers) {
                    DCT_BLOCK(avx2, src, cw, t->scale, block);
                    quantise_block(&t->quantisers[c], by, bx, block, t->rows[c] + ((size_t)v * t->blocks_w[c] + bx) * 64);
                } else {
                    DCT_BLOCK(avx2, src, cw, t->scale, t->coefs[c] + ((size_t)by * t->blocks_w[c] + bx) * 64);
                }
            }
        }
    }
    if (t->scan) scan_mcu_row(t->scan, my, t->rows);
}

/* image: height x width x channels uint8 (channels 1 or 3, equal to the number of components). to_ycbcr:
 * convert RGB to YCbCr (else code the channels as they are). samp_h/samp_v: sampling factors; every factor
 * must divide the largest. Each component's blocks as libjpeg counts them (blocks_h[c] x blocks_w[c]; blocks
 * past them, inside the last MCU, are the entropy coder's dummy blocks) go either to coefs[c] (float, 64 per
 * block) or, with quantisers and scan, through quantisers[c] into the scan. Returns 0 or a SEMJPEG_ error. */
static int forward_transform(const uint8_t *image, int height, int width, int channels, int to_ycbcr,
                             const int *samp_h, const int *samp_v, const int *blocks_h, const int *blocks_w,
                             float **coefs, const Quantiser *quantisers, Scan *scan) {
    if (height <= 0 || width <= 0 || (channels != 1 && channels != 3) || (to_ycbcr && channels != 3))
        return SEMJPEG_BAD_ARGUMENT;
    int hmax = 1, vmax = 1;
    for (int c = 0; c < channels; c++) {
        if (samp_h[c] < 1 || samp_h[c] > 4 || samp_v[c] < 1 || samp_v[c] > 4) return SEMJPEG_BAD_ARGUMENT;
        if (samp_h[c] > hmax) hmax = samp_h[c];
        if (samp_v[c] > vmax) vmax = samp_v[c];
    }
    int mcus_h = (width + 8 * hmax - 1) / (8 * hmax), mcus_v = (height + 8 * vmax - 1) / (8 * vmax);
    for (int c = 0; c < channels; c++)
        if (hmax % samp_h[c] || vmax % samp_v[c] || blocks_w[c] > mcus_h * samp_h[c] ||
            blocks_h[c] > mcus_v * samp_v[c] || blocks_w[c] < 1 || blocks_h[c] < 1)
            return SEMJPEG_BAD_ARGUMENT;
    if (scan && channels == 1 && (samp_h[0] != 1 || samp_v[0] != 1)) return SEMJPEG_BAD_ARGUMENT;
    Transform t = {image, height, width, channels, to_ycbcr, hmax, vmax, samp_h, samp_v, blocks_h, blocks_w,
                   coefs, quantisers, NULL, scan, {0}};
    int16_t *rows[4] = {NULL, NULL, NULL, NULL};
    t.rows = rows;
    aan_scale(t.scale);
    McuRow m = {channels, 8 * vmax, mcus_h * 8 * hmax, NULL, NULL, NULL, 0, 0};
    size_t plane = (size_t)m.rows * m.pw;
    m.source = malloc(sizeof(float) * plane * (2 * (size_t)channels + 1));
    int rc = m.source ? 0 : SEMJPEG_NO_MEMORY;
    if (rc == 0 && scan) rc = row_buffers_init(rows, channels, samp_v, blocks_w);
    if (rc == 0) {
        m.boxed = m.source + plane * channels;
        m.plane = m.boxed + plane * channels;
        for (int my = 0; my < mcus_v && !(scan && scan->w.error); my++) transform_mcu_row(&t, &m, my);
    }
    row_buffers_free(rows, channels);
    free(m.source);
    return rc;
}

/* The DCT of every block (float; rate control requantises it several times). Returns 0 or a SEMJPEG_ error. */
int semjpeg_forward_dct(const uint8_t *image, int height, int width, int channels, int to_ycbcr,
                        const int *samp_h, const int *samp_v, const int *blocks_h, const int *blocks_w,
                        float **coefs) {
    return forward_transform(image, height, width, channels, to_ycbcr, samp_h, samp_v, blocks_h, blocks_w, coefs,
                             NULL, NULL);
}

/* Requantise one component's float DCT blocks (raw: blocks_h x blocks_w x 64, from semjpeg_forward_dct) into
 * out (int16, same layout). Returns 0 or a SEMJPEG_ error (a zero step, a level >= levels: bad argument). */
int semjpeg_requantize(const semjpeg_requantize_args *args) {
    if (!args || !args->raw || !args->out || args->blocks_h <= 0 || args->blocks_w <= 0) return SEMJPEG_BAD_ARGUMENT;
    const float *raw = args->raw;
    int16_t *out = args->out;
    int blocks_h = args->blocks_h, blocks_w = args->blocks_w;
    Quantiser q;
    int rc = quantiser_init(&q, args->cell_level, args->cells_h, args->cells_w, args->blocks_per_cell_v,
                            args->blocks_per_cell_h, args->levels, args->level_tables, args->frame_table,
                            args->deadzone);
    if (rc) return rc;
    for (int by = 0; by < blocks_h; by++)
        for (int bx = 0; bx < blocks_w; bx++) {
            size_t at = ((size_t)by * blocks_w + bx) * 64;
            quantise_block(&q, by, bx, raw + at, out + at);
        }
    quantiser_free(&q);
    return 0;
}

/* Entropy-code the quantised coefficients of every block (coefs[c]: blocks_h[c] x blocks_w[c] x 64, natural
 * order) as one baseline scan. Returns the number of bytes written or a negative SEMJPEG_ error. */
int64_t semjpeg_encode_baseline_scan(const semjpeg_encode_baseline_scan_args *args) {
    if (!args || args->n_components < 1 || args->n_components > 4) return SEMJPEG_BAD_ARGUMENT;
    int n_components = args->n_components, mcus_v = args->mcus_v;
    const int16_t **coefs = args->coefs;
    const int *blocks_w = args->blocks_w, *samp_v = args->samp_v;
    if (n_components == 1) mcus_v = args->blocks_h[0];
    Scan s;
    if (scan_init(&s, n_components, args->blocks_h, blocks_w, args->samp_h, samp_v, args->dc_code, args->dc_size,
                  args->ac_code, args->ac_size, args->mcus_h, args->out, args->capacity))
        return SEMJPEG_NO_MEMORY;
    int16_t *rows[4];
    for (int my = 0; my < mcus_v && !s.w.error; my++) {
        for (int c = 0; c < n_components; c++)
            rows[c] = (int16_t *)coefs[c] + (size_t)my * (n_components > 1 ? samp_v[c] : 1) * blocks_w[c] * 64;
        scan_mcu_row(&s, my, rows);
    }
    return scan_finish(&s);
}

/* A baseline scan written a few MCU rows at a time (the caller holds only those rows' coefficients): open,
 * rows in order, close. The tables, block counts and output buffer must outlive the writer. */
void *semjpeg_scan_writer_open(int n_components, const int *blocks_h, const int *blocks_w, const int *samp_h,
                               const int *samp_v, const uint32_t **dc_code, const uint8_t **dc_size,
                               const uint32_t **ac_code, const uint8_t **ac_size, int mcus_h, uint8_t *out,
                               int64_t capacity) {
    if (n_components < 1 || n_components > 4 || !out || capacity < 0) return NULL;
    Scan *s = malloc(sizeof(Scan));
    if (!s) return NULL;
    if (scan_init(s, n_components, blocks_h, blocks_w, samp_h, samp_v, dc_code, dc_size, ac_code, ac_size, mcus_h,
                  out, capacity)) {
        free(s);
        return NULL;
    }
    return s;
}

/* Code MCU rows first_mcu_row .. first_mcu_row + n_mcu_rows - 1; coefs[c]: component c's blocks from block row
 * first_mcu_row * samp_v[c] (single component: block row first_mcu_row), blocks_w[c] x 64 per row, natural order.
 * Returns 0, or SEMJPEG_BAD_ARGUMENT (then close reports the writer's error). */
int semjpeg_scan_writer_rows(void *writer, const int16_t **coefs, int first_mcu_row, int n_mcu_rows) {
    Scan *s = writer;
    if (!s || !coefs || first_mcu_row < 0 || n_mcu_rows < 0) return SEMJPEG_BAD_ARGUMENT;
    int16_t *rows[4];
    for (int i = 0; i < n_mcu_rows && !s->w.error; i++) {
        for (int c = 0; c < s->n_components; c++)
            rows[c] = (int16_t *)coefs[c] + (size_t)i * (s->n_components > 1 ? s->samp_v[c] : 1) * s->blocks_w[c] * 64;
        scan_mcu_row(s, first_mcu_row + i, rows);
    }
    return 0;
}

/* Finish the scan and free the writer; returns the scan's length or a negative SEMJPEG_ error. */
int64_t semjpeg_scan_writer_close(void *writer) {
    Scan *s = writer;
    if (!s) return SEMJPEG_BAD_ARGUMENT;
    int64_t length = scan_finish(s);
    free(s);
    return length;
}

/* Symbol counts of the scan semjpeg_encode_baseline_scan would write for the same coefficients (dummy blocks
 * included): dc_freq and ac_freq hold 257 int64 counts per component (the 257th is left for the Huffman table
 * builder), added to what they hold. Returns 0 or a negative SEMJPEG_ error. */
int semjpeg_scan_frequencies(int n_components, const int16_t **coefs, const int *blocks_h, const int *blocks_w,
                             const int *samp_h, const int *samp_v, int mcus_v, int mcus_h, int64_t *dc_freq,
                             int64_t *ac_freq) {
    if (n_components < 1 || n_components > 4 || !dc_freq || !ac_freq) return SEMJPEG_BAD_ARGUMENT;
    if (n_components == 1) mcus_v = blocks_h[0];
    Scan s;
    if (scan_init(&s, n_components, blocks_h, blocks_w, samp_h, samp_v, NULL, NULL, NULL, NULL, mcus_h, NULL, 0))
        return SEMJPEG_NO_MEMORY;
    for (int c = 0; c < n_components; c++) {
        s.dc_freq[c] = dc_freq + 257 * c;
        s.ac_freq[c] = ac_freq + 257 * c;
    }
    int16_t *rows[4];
    for (int my = 0; my < mcus_v && !s.w.error; my++) {
        for (int c = 0; c < n_components; c++)
            rows[c] = (int16_t *)coefs[c] + (size_t)my * (n_components > 1 ? samp_v[c] : 1) * blocks_w[c] * 64;
        scan_mcu_row(&s, my, rows);
    }
    free(s.zigzag);
    return s.w.error == 3 ? SEMJPEG_OUT_OF_RANGE : 0;
}

/* Optimal Huffman table for the 256 symbol counts `freq` (ITU T.81 Annex K.2), exactly as libjpeg's
 * jpeg_gen_optimal_table builds it (same tie-breaking, reserved all-ones code, length limit 16), so files equal
 * libjpeg's optimize_coding output. bits: 16 counts of codes of length 1..16; values: the symbols by code length.
 * Returns the number of symbols, or SEMJPEG_BAD_ARGUMENT. */
int semjpeg_optimal_huffman(const int64_t *counts, uint8_t *bits_out, uint8_t *values) {
    enum { MAX_CLEN = 32 };
    int64_t freq[257];
    int bits[MAX_CLEN + 1] = {0}, codesize[257] = {0}, others[257];
    if (!counts || !bits_out || !values) return SEMJPEG_BAD_ARGUMENT;
    for (int i = 0; i < 256; i++) {
        if (counts[i] < 0) return SEMJPEG_BAD_ARGUMENT;
        freq[i] = counts[i];
    }
    for (int i = 0; i < 257; i++) others[i] = -1;
    freq[256] = 1; /* reserves one code point: no code is all ones */
    for (;;) {
        int c1 = -1, c2 = -1;
        int64_t v = INT64_MAX;
        for (int i = 0; i <= 256; i++) /* smallest nonzero count; ties: the larger symbol */
            if (freq[i] && freq[i] <= v) { v = freq[i]; c1 = i; }
        v = INT64_MAX;
        for (int i = 0; i <= 256; i++)
            if (freq[i] && freq[i] <= v && i != c1) { v = freq[i]; c2 = i; }
        if (c2 < 0) break;
        freq[c1] += freq[c2];
        freq[c2] = 0;
        codesize[c1]++;
        while (others[c1] >= 0) { c1 = others[c1]; codesize[c1]++; }
        others[c1] = c2;
        codesize[c2]++;
        while (others[c2] >= 0) { c2 = others[c2]; codesize[c2]++; }
    }
    for (int i = 0; i <= 256; i++)
        if (codesize[i]) {
            if (codesize[i] > MAX_CLEN) return SEMJPEG_BAD_ARGUMENT;
            bits[codesize[i]]++;
        }
    int i;
    for (i = MAX_CLEN; i > 16; i--)
        while (bits[i] > 0) {
            int j = i - 2;
            while (bits[j] == 0) j--;
            bits[i] -= 2;
            bits[i - 1]++;
            bits[j + 1] += 2;
            bits[j]--;
        }
    while (bits[i] == 0) i--;
    bits[i]--; /* drop the reserved symbol 256 from the longest length */
    for (int k = 1; k <= 16; k++) bits_out[k - 1] = (uint8_t)bits[k];
    int p = 0;
    for (int len = 1; len <= MAX_CLEN; len++)
        for (int j = 0; j <= 255; j++)
            if (codesize[j] == len) values[p++] = (uint8_t)j;
    return p;
}

/* Baseline Huffman decoding (ITU T.81 F.2.2), for reading back another encoder's quantised coefficients. */
typedef struct {
    int32_t maxcode[18]; /* largest code of each length (-1: none); maxcode[17] sentinel */
    int32_t valoffset[17];
    const uint8_t *values;
    uint16_t fast[512]; /* 9-bit lookahead: (length << 8 | symbol), 0 when the code is longer */
} HuffDecoder;

static int huff_decoder_init(HuffDecoder *d, const uint8_t *bits, const uint8_t *values, int n_values) {
    int code = 0, k = 0;
    memset(d->fast, 0, sizeof d->fast);
    d->values = values;
    for (int len = 1; len <= 16; len++) {
        d->valoffset[len] = k - code;
        if (bits[len - 1]) {
            for (int i = 0; i < bits[len - 1]; i++, k++, code++) {
                if (k >= n_values) return SEMJPEG_BAD_ARGUMENT;
                if (len <= 9)
                    for (int j = 0; j < 1 << (9 - len); j++)
                        d->fast[(code << (9 - len)) | j] = (uint16_t)(len << 8 | values[k]);
            }
            d->maxcode[len] = code - 1;
        } else {
            d->maxcode[len] = -1;
        }
        if (code > (1 << len)) return SEMJPEG_BAD_ARGUMENT;
        code <<= 1;
    }
    d->maxcode[17] = INT32_MAX;
    return 0;
}

typedef struct {
    const uint8_t *data;
    int64_t pos, len;
    uint64_t acc;
    int nbits, hit_marker;
} BitReader;

static inline void reader_fill(BitReader *r) {
    while (r->nbits <= 56) {
        uint8_t b = 0;
        if (!r->hit_marker && r->pos < r->len) {
            b = r->data[r->pos];
            if (b == 0xFF) {
                uint8_t next = r->pos + 1 < r->len ? r->data[r->pos + 1] : 0xD9;
                if (next == 0x00) r->pos += 2;
                else { r->hit_marker = 1; b = 0; }
            } else {
                r->pos++;
            }
        }
        r->acc |= (uint64_t)b << (56 - r->nbits);
        r->nbits += 8;
    }
}

static inline int reader_bits(BitReader *r, int n) { /* n in 0..16 */
    if (n == 0) return 0;
    if (r->nbits < n) reader_fill(r);
    int v = (int)(r->acc >> (64 - n));
    r->acc <<= n;
    r->nbits -= n;
    return v;
}

/* Next symbol, or -1 for a code the table lacks. */
static inline int huff_decode(BitReader *r, const HuffDecoder *d) {
    if (r->nbits < 16) reader_fill(r);
    uint16_t f = d->fast[r->acc >> (64 - 9)];
    if (f) {
        int len = f >> 8;
        r->acc <<= len;
        r->nbits -= len;
        return f & 0xFF;
    }
    int len = 10;
    int32_t code = (int32_t)(r->acc >> (64 - len));
    while (code > d->maxcode[len]) {
        if (++len > 16) return -1;
        code = (int32_t)(r->acc >> (64 - len));
    }
    r->acc <<= len;
    r->nbits -= len;
    return d->values[d->valoffset[len] + code];
}

static inline int extend(int v, int n) { return n && v < (1 << (n - 1)) ? v - (1 << n) + 1 : v; }

/* Decode one interleaved baseline scan (no restart markers; one component: blocks in raster order) into
 * coefs[c] (blocks_h[c] x blocks_w[c] x 64, natural order); blocks past a component's edge inside the last
 * MCUs are decoded and dropped. Huffman table t of class DC/AC: bits (16 counts) and values (n_values);
 * dc_table/ac_table: each component's table index. Returns 0, or SEMJPEG_BAD_ARGUMENT for a corrupt scan. */
int semjpeg_decode_baseline_scan(const semjpeg_decode_baseline_scan_args *args) {
    if (!args || !args->scan || args->scan_len < 0 || args->n_components < 1 || args->n_components > 4 ||
        args->n_tables < 1 || args->n_tables > 4)
        return SEMJPEG_BAD_ARGUMENT;
    int n_components = args->n_components, n_tables = args->n_tables, mcus_v = args->mcus_v, mcus_h = args->mcus_h;
    const int *blocks_h = args->blocks_h, *blocks_w = args->blocks_w, *samp_h = args->samp_h, *samp_v = args->samp_v;
    const int *dc_table = args->dc_table, *ac_table = args->ac_table;
    int16_t **coefs = args->coefs;
    HuffDecoder dc[4], ac[4];
    for (int t = 0; t < n_tables; t++)
        if (huff_decoder_init(&dc[t], args->dc_bits + 16 * t, args->dc_values + 256 * t, args->dc_n_values[t]) ||
            huff_decoder_init(&ac[t], args->ac_bits + 16 * t, args->ac_values + 256 * t, args->ac_n_values[t]))
            return SEMJPEG_BAD_ARGUMENT;
    for (int c = 0; c < n_components; c++)
        if (dc_table[c] < 0 || dc_table[c] >= n_tables || ac_table[c] < 0 || ac_table[c] >= n_tables)
            return SEMJPEG_BAD_ARGUMENT;
    if (n_components == 1) {
        mcus_v = blocks_h[0];
        mcus_h = blocks_w[0];
    }
    BitReader r = {args->scan, 0, args->scan_len, 0, 0, 0};
    int pred[4] = {0, 0, 0, 0};
    int16_t dummy[64];
    for (int my = 0; my < mcus_v; my++)
        for (int mx = 0; mx < mcus_h; mx++)
            for (int c = 0; c < n_components; c++) {
                int sv = n_components > 1 ? samp_v[c] : 1, sh = n_components > 1 ? samp_h[c] : 1;
                for (int v = 0; v < sv; v++)
                    for (int h = 0; h < sh; h++) {
                        int by = my * sv + v, bx = mx * sh + h;
                        int16_t *blk = by < blocks_h[c] && bx < blocks_w[c]
                                           ? coefs[c] + ((size_t)by * blocks_w[c] + bx) * 64 : dummy;
                        memset(blk, 0, 64 * sizeof(int16_t));
                        int s = huff_decode(&r, &dc[dc_table[c]]);
                        if (s < 0 || s > 11) return SEMJPEG_BAD_ARGUMENT;
                        pred[c] += extend(reader_bits(&r, s), s);
                        blk[0] = (int16_t)pred[c];
                        for (int k = 1; k < 64;) {
                            int rs = huff_decode(&r, &ac[ac_table[c]]);
                            if (rs < 0) return SEMJPEG_BAD_ARGUMENT;
                            int run = rs >> 4, size = rs & 15;
                            if (size == 0) {
                                if (run != 15) break; /* EOB */
                                k += 16;
                                continue;
                            }
                            k += run;
                            if (k > 63 || size > 10) return SEMJPEG_BAD_ARGUMENT;
                            blk[ZIGZAG[k]] = (int16_t)extend(reader_bits(&r, size), size);
                            k++;
                        }
                        if (r.hit_marker && r.nbits < 0) return SEMJPEG_BAD_ARGUMENT;
                    }
            }
    return 0;
}

/* One encode, fused: transform, requantise and entropy-code the image one MCU row at a time. The file equals
 * semjpeg_forward_dct + semjpeg_requantize + semjpeg_encode_baseline_scan, without any whole-image
 * coefficient array. level_tables[c] (levels x 64) and frame_tables[c] (64) are component c's tables. Returns
 * the scan's length or a negative SEMJPEG_ error. */
int64_t semjpeg_encode_image_scan(const semjpeg_encode_image_scan_args *args) {
    if (!args || (args->channels != 1 && args->channels != 3)) return SEMJPEG_BAD_ARGUMENT;
    int channels = args->channels, width = args->width;
    const int *samp_h = args->samp_h, *samp_v = args->samp_v, *blocks_h = args->blocks_h, *blocks_w = args->blocks_w;
    static const int unit[1] = {1};
    if (channels == 1) samp_h = samp_v = unit; /* a lone component's scan is block by block, whatever its factors */
    int hmax = 1;
    for (int c = 0; c < channels; c++) hmax = samp_h[c] > hmax ? samp_h[c] : hmax;
    Quantiser q[3];
    Scan s;
    int rc = quantisers_init(q, channels, samp_h, samp_v, args->cell_level, args->cells_h, args->cells_w,
                             args->levels, args->level_tables, args->frame_tables, args->deadzone);
    if (rc) return rc;
    rc = scan_init(&s, channels, blocks_h, blocks_w, samp_h, samp_v, args->dc_code, args->dc_size, args->ac_code,
                   args->ac_size, (width + 8 * hmax - 1) / (8 * hmax), args->out, args->capacity);
    if (rc == 0) rc = forward_transform(args->image, args->height, width, channels, args->to_ycbcr, samp_h, samp_v,
                                        blocks_h, blocks_w, NULL, q, &s);
    int64_t length = s.zigzag ? scan_finish(&s) : rc;
    for (int c = 0; c < channels; c++) quantiser_free(&q[c]);
    return rc ? rc : length;
}

/* Rate control's trial encode, fused: requantise the float DCT blocks (from semjpeg_forward_dct) and
 * entropy-code them one MCU row at a time; equal to semjpeg_requantize + semjpeg_encode_baseline_scan.
 * Returns the scan's length or a negative SEMJPEG_ error. */
int64_t semjpeg_requantize_scan(const semjpeg_requantize_scan_args *args) {
    if (!args || (args->n_components != 1 && args->n_components != 3)) return SEMJPEG_BAD_ARGUMENT;
    int n_components = args->n_components, mcus_v = args->mcus_v;
    const float **raw = args->raw;
    const int *blocks_h = args->blocks_h, *blocks_w = args->blocks_w, *samp_h = args->samp_h, *samp_v = args->samp_v;
    if (n_components == 1) mcus_v = blocks_h[0];
    Quantiser q[3];
    Scan s;
    int16_t *rows[4] = {NULL, NULL, NULL, NULL};
    int rc = quantisers_init(q, n_components, samp_h, samp_v, args->cell_level, args->cells_h, args->cells_w,
                             args->levels, args->level_tables, args->frame_tables, args->deadzone);
    if (rc) return rc;
    const int one[4] = {1, 1, 1, 1}, *per_row = n_components > 1 ? samp_v : one;
    rc = scan_init(&s, n_components, blocks_h, blocks_w, samp_h, samp_v, args->dc_code, args->dc_size,
                   args->ac_code, args->ac_size, args->mcus_h, args->out, args->capacity);
    if (rc == 0) rc = row_buffers_init(rows, n_components, per_row, blocks_w);
    for (int my = 0; rc == 0 && my < mcus_v && !s.w.error; my++) {
        for (int c = 0; c < n_components; c++)
            for (int v = 0; v < per_row[c]; v++) {
                int by = my * per_row[c] + v;
                if (by >= blocks_h[c]) break;
                for (int bx = 0; bx < blocks_w[c]; bx++)
                    quantise_block(&q[c], by, bx, raw[c] + ((size_t)by * blocks_w[c] + bx) * 64,
                                   rows[c] + ((size_t)v * blocks_w[c] + bx) * 64);
            }
        scan_mcu_row(&s, my, rows);
    }
    int64_t length = s.zigzag ? scan_finish(&s) : rc;
    row_buffers_free(rows, n_components);
    for (int c = 0; c < n_components; c++) quantiser_free(&q[c]);
    return rc ? rc : length;
}

/* ---- Saliency-weighted rate-distortion decisions (mode "rdo"; numpy reference: rdo.optimise_component) ----
 *
 * For every block and AC coefficient (zigzag position i >= 1) choose v among {start value k, k moved one step
 * towards 0, 0, round(x / q)} minimising  w_b f_i (x - v q)^2 + lambda bits(v), where bits(v) is the code
 * length of the (run, size) symbol that v would take after the run of zeros before it in the start block,
 * plus its size category, plus ZRL codes for runs of 16 or more. Then choose the last kept position L in
 * 0..63 minimising the kept costs up to L + the squared error of zeroing the rest + lambda EOB (when L < 63).
 * raw: float [n][64] natural order; start: int16 [n][64]; table: 64 steps; block_weight: n; freq_weight: 64
 * (natural); ac_bits: 256 code lengths. DC is copied. Returns 0 or SEMJPEG_BAD_ARGUMENT. */
/* One AC symbol of a nonzero value v after `run` zeros, counted as the entropy coder will write it: a ZRL per
 * 16 zeros, then (run, size). */
static inline void count_ac_symbol(int64_t *ac_freq, int run, int v) {
    for (; run > 15; run -= 16) ac_freq[0xF0]++;
    ac_freq[(run << 4) | bit_length(v)]++;
}

/* w (x - v q)^2 + lambda bits(v) for a nonzero v: Huffman length of its (run, size) symbol + size bits + ZRLs,
 * with symbol_bits[s] = ac_bits[s] + (s & 15) precomputed (one lookup). */
static inline float rdo_cost(float xi, int v, float q, float w, float lam, const float *symbol_bits, int r16,
                             float run_bits) {
    float e = xi - (float)v * q;
    float bits = symbol_bits[r16 | bit_length(v)] + run_bits;
    return w * e * e + lam * bits;
}

/* AC symbols of one block given by its zigzag values zz[1..last] (zero after `last`): (run, size), ZRL and
 * EOB counts added to ac_freq, as count_block counts them. */
static inline void count_ac_zigzag(const int *zz, int last, int64_t *ac_freq) {
    int run = 0, last_nonzero = 0;
    for (int i = 1; i <= last; i++) {
        int v = zz[i];
        if (!v) { run++; continue; }
        count_ac_symbol(ac_freq, run, v);
        run = 0;
        last_nonzero = i;
    }
    if (last_nonzero < 63) ac_freq[0x00]++;
}

/* AC symbol counts (257 int64, added to) of n_blocks blocks (natural order), without the DC and dummy blocks
 * that semjpeg_scan_frequencies also counts. Returns 0, or SEMJPEG_OUT_OF_RANGE for a value beyond baseline. */
int semjpeg_ac_frequencies(const int16_t *coefs, int64_t n_blocks, int64_t *ac_freq) {
    if (!coefs || !ac_freq || n_blocks < 0) return SEMJPEG_BAD_ARGUMENT;
    int zz[64];
    for (int64_t b = 0; b < n_blocks; b++) {
        const int16_t *blk = coefs + 64 * b;
        for (int i = 1; i < 64; i++) {
            zz[i] = blk[ZIGZAG[i]];
            if (zz[i] > 1023 || zz[i] < -1023) return SEMJPEG_OUT_OF_RANGE;
        }
        count_ac_zigzag(zz, 63, ac_freq);
    }
    return 0;
}

int semjpeg_rdo_decisions(const float *raw, const int16_t *start, int64_t n_blocks, const uint16_t *table,
                          const float *block_weight, const float *freq_weight, float lam, const float *ac_bits,
                          int16_t *out) {
    return semjpeg_rdo_decisions_counted(raw, start, n_blocks, table, block_weight, freq_weight, lam, ac_bits, out,
                                         NULL);
}

/* Zigzag position of each natural-order coefficient (the inverse of ZIGZAG). */
static const uint8_t ZIGZAG_POSITION[64] = {0,  1,  5,  6,  14, 15, 27, 28, 2,  4,  7,  13, 16, 26, 29, 42,
                                            3,  8,  12, 17, 25, 30, 41, 43, 9,  11, 18, 24, 31, 40, 44, 53,
                                            10, 19, 23, 32, 39, 45, 52, 54, 20, 22, 33, 38, 46, 51, 55, 60,
                                            21, 34, 37, 47, 50, 56, 59, 61, 35, 36, 48, 49, 57, 58, 62, 63};

/* Nearest integer, ties to even (lrintf under the default rounding mode), inline: the build does not pass
 * -fno-math-errno, so lrintf is a libm call (it was a quarter of the RDO kernel's time). Values are far
 * inside the int range (|x / q| <= 2^13). */
static inline int round_even(float v) {
#if defined(__SSE2__)
    return _mm_cvtss_si32(_mm_set_ss(v));
#else
    return (int)lrintf(v);
#endif
}

/* The nearest integer of x / q (round_even), clamped to +-limit (2047 for a DC, 1023 for an AC value). */
static inline int nearest_value(float x, float q, int limit) {
    int v = round_even(x / q);
    return v > limit ? limit : v < -limit ? -limit : v;
}

/* Bit n set when |x[n]| >= half_q[n], i.e. the nearest value of coefficient n is nonzero (or a tie at 0.5). */
static inline uint64_t rdo_candidates(const float *x, const float *half_q) {
    uint64_t mask = 0;
#if defined(__SSE2__)
    const __m128 abs_mask = _mm_castsi128_ps(_mm_set1_epi32(0x7FFFFFFF));
    for (int j = 0; j < 16; j++) {
        __m128 a = _mm_and_ps(_mm_loadu_ps(x + 4 * j), abs_mask);
        mask |= (uint64_t)_mm_movemask_ps(_mm_cmpge_ps(a, _mm_loadu_ps(half_q + 4 * j))) << (4 * j);
    }
#else
    for (int n = 0; n < 64; n++) mask |= (uint64_t)(fabsf(x[n]) >= half_q[n]) << n;
#endif
    return mask;
}

/* The number of AC coefficients of n_blocks float DCT blocks whose nearest value under `table` is nonzero (or a
 * tie at 0.5): the RDO's candidates. Rate control's estimates use it to correct their sample of the blocks.
 * Returns the count, or SEMJPEG_BAD_ARGUMENT. */
int64_t semjpeg_count_candidates(const float *raw, int64_t n_blocks, const uint16_t *table) {
    if (!raw || !table || n_blocks < 0) return SEMJPEG_BAD_ARGUMENT;
    float half_q[64];
    for (int i = 0; i < 64; i++) {
        if (table[i] == 0) return SEMJPEG_BAD_ARGUMENT;
        half_q[i] = 0.5f * (float)table[i];
    }
    int64_t count = 0;
    for (int64_t b = 0; b < n_blocks; b++) {
        uint64_t mask = rdo_candidates(raw + 64 * b, half_q) & ~(uint64_t)1;
#if defined(__GNUC__) || defined(__clang__)
        count += __builtin_popcountll(mask);
#else
        for (; mask; mask &= mask - 1) count++;
#endif
    }
    return count;
}

#if RDO_AVX2
/* rdo_cost for 8 lanes: the same operations in the same order as the scalar one (bit-identical results). */
__attribute__((target("avx2"))) static inline __m256 rdo_cost8(__m256 x, __m256i v, __m256 q, __m256 w, __m256 lam,
                                                               const float *symbol_bits, __m256i r16, __m256 run_bits) {
    __m256 e = _mm256_sub_ps(x, _mm256_mul_ps(_mm256_cvtepi32_ps(v), q));
    /* magnitude category from the float exponent: |v| <= 1023 converts exactly; 0 -> 0 */
    __m256i cat = _mm256_sub_epi32(_mm256_srli_epi32(_mm256_castps_si256(_mm256_cvtepi32_ps(_mm256_abs_epi32(v))), 23),
                                   _mm256_set1_epi32(126));
    cat = _mm256_max_epi32(cat, _mm256_setzero_si256());
    __m256 bits = _mm256_add_ps(_mm256_i32gather_ps(symbol_bits, _mm256_or_si256(r16, cat), 4), run_bits);
    return _mm256_add_ps(_mm256_mul_ps(_mm256_mul_ps(w, e), e), _mm256_mul_ps(lam, bits));
}

/* The RDO of semjpeg_rdo_decisions_counted from the nearest values (start == NULL, lam != 0) for n8 blocks
 * (a multiple of 8), eight blocks at a time, one per lane, position by position in zigzag order: every
 * operation of the scalar loop, in the same order, on the lanes where the position is a candidate (so the same
 * decisions, bit for bit; tests/test_native_simd.py compares the bytes with a build without it). Positions
 * where none of the eight blocks has a candidate are skipped. */
__attribute__((target("avx2"))) static void rdo_nearest_avx2(const float *raw, int64_t n8, const float *qf,
                                                             const float *half_q, const float *block_weight,
                                                             const float *freq_weight, float lam_s, float eob_s,
                                                             float zrl, const float *symbol_bits, int16_t *out,
                                                             int64_t *ac_freq) {
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    const __m256i zero_i = _mm256_setzero_si256(), one_i = _mm256_set1_epi32(1);
    const __m256i lim = _mm256_set1_epi32(1023), neg_lim = _mm256_set1_epi32(-1023);
    const __m256 lam = _mm256_set1_ps(lam_s), eob = _mm256_set1_ps(eob_s), zrl_v = _mm256_set1_ps(zrl);
    const __m256 zero = _mm256_setzero_ps();
    __m256 xs[64];
    int32_t vals[64][8];
    for (int64_t b = 0; b < n8; b += 8) {
        for (int g = 0; g < 8; g++) {
            __m256 *r = xs + 8 * g;
            for (int j = 0; j < 8; j++) r[j] = _mm256_loadu_ps(raw + 64 * (b + j) + 8 * g);
            transpose8_avx(r);
        }
        const __m256 wb = _mm256_loadu_ps(block_weight + b);
        __m256i prev = zero_i, last = zero_i;
        __m256 prefix = zero, best_total = eob;
        uint8_t nonzero_lanes[64] = {0};
        for (int i = 1; i < 64; i++) {
            const int n = ZIGZAG[i];
            const __m256 x = xs[n];
            const __m256 cand = _mm256_cmp_ps(_mm256_and_ps(x, abs_mask), _mm256_set1_ps(half_q[n]), _CMP_GE_OQ);
            if (!_mm256_movemask_ps(cand)) continue;
            const __m256 q = _mm256_set1_ps(qf[n]);
            __m256i ki = _mm256_cvtps_epi32(_mm256_div_ps(x, q)); /* round to nearest even, as round_even */
            ki = _mm256_and_si256(_mm256_max_epi32(_mm256_min_epi32(ki, lim), neg_lim), _mm256_castps_si256(cand));
            const __m256i kinz = _mm256_xor_si256(_mm256_cmpeq_epi32(ki, zero_i), _mm256_set1_epi32(-1));
            const __m256i run = _mm256_sub_epi32(_mm256_set1_epi32(i - 1), prev);
            const __m256 run_bits = _mm256_and_ps(
                _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(run, 4)), zrl_v),
                _mm256_castsi256_ps(_mm256_cmpgt_epi32(run, _mm256_set1_epi32(15))));
            const __m256i r16 = _mm256_slli_epi32(_mm256_and_si256(run, _mm256_set1_epi32(15)), 4);
            const __m256 w = _mm256_mul_ps(wb, _mm256_set1_ps(freq_weight[n]));
            const __m256 zc = _mm256_mul_ps(_mm256_mul_ps(w, x), x);
            const __m256i lower = _mm256_sub_epi32(ki, _mm256_sign_epi32(one_i, ki));
            const __m256i lnz = _mm256_andnot_si256(_mm256_cmpeq_epi32(lower, zero_i), kinz);
            __m256 bc = _mm256_blendv_ps(zc, rdo_cost8(x, ki, q, w, lam, symbol_bits, r16, run_bits),
                                         _mm256_castsi256_ps(kinz));
            __m256i bv = ki;
            const __m256 cl = _mm256_blendv_ps(zc, rdo_cost8(x, lower, q, w, lam, symbol_bits, r16, run_bits),
                                               _mm256_castsi256_ps(lnz));
            const __m256 m1 = _mm256_and_ps(_mm256_castsi256_ps(kinz), _mm256_cmp_ps(cl, bc, _CMP_LT_OQ));
            bc = _mm256_blendv_ps(bc, cl, m1);
            bv = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(bv), _mm256_castsi256_ps(lower), m1));
            const __m256 m2 = _mm256_and_ps(_mm256_castsi256_ps(lnz), _mm256_cmp_ps(zc, bc, _CMP_LT_OQ));
            bc = _mm256_blendv_ps(bc, zc, m2);
            bv = _mm256_andnot_si256(_mm256_castps_si256(m2), bv);
            prev = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(prev),
                                                        _mm256_castsi256_ps(_mm256_set1_epi32(i)),
                                                        _mm256_castsi256_ps(kinz)));
            prefix = _mm256_blendv_ps(prefix, _mm256_add_ps(prefix, _mm256_sub_ps(bc, zc)), cand);
            const __m256 total = _mm256_add_ps(prefix, i < 63 ? eob : zero);
            const __m256 better = _mm256_and_ps(cand, _mm256_cmp_ps(total, best_total, _CMP_LT_OQ));
            best_total = _mm256_blendv_ps(best_total, total, better);
            last = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(last),
                                                        _mm256_castsi256_ps(_mm256_set1_epi32(i)), better));
            _mm256_storeu_si256((__m256i *)vals[i], bv);
            nonzero_lanes[i] = (uint8_t)(~_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(bv, zero_i))));
        }
        /* per lane, the mask of its nonzero positions: nonzero_lanes is a 64 x 8 bit matrix (bit l of byte i:
         * lane l's value at position i is nonzero), transposed 8 x 8 bits at a time (Hacker's Delight 7-3).
         * Setting the lanes' bits one at a time in the loop above mispredicted enough to take 40% of the time. */
        uint64_t nonzero[8] = {0};
        for (int g = 0; g < 8; g++) {
            uint64_t m, t;
            memcpy(&m, nonzero_lanes + 8 * g, 8);
            if (!m) continue;
            t = (m ^ (m >> 7)) & 0x00AA00AA00AA00AAULL;
            m ^= t ^ (t << 7);
            t = (m ^ (m >> 14)) & 0x0000CCCC0000CCCCULL;
            m ^= t ^ (t << 14);
            t = (m ^ (m >> 28)) & 0x00000000F0F0F0F0ULL;
            m ^= t ^ (t << 28);
            for (int l = 0; l < 8; l++) nonzero[l] |= ((m >> (8 * l)) & 0xFF) << (8 * g);
        }
        /* keeping everything codes no EOB */
        last = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(last),
                                                    _mm256_castsi256_ps(_mm256_set1_epi32(63)),
                                                    _mm256_cmp_ps(prefix, best_total, _CMP_LT_OQ)));
        int32_t lasts[8];
        _mm256_storeu_si256((__m256i *)lasts, last);
        for (int l = 0; l < 8; l++) {
            const float *x = raw + 64 * (b + l);
            uint64_t kept = nonzero[l] & (lasts[l] >= 63 ? ~(uint64_t)0 : ((uint64_t)2 << lasts[l]) - 1);
            int16_t *o = out ? out + 64 * (b + l) : NULL;
            if (o) {
                memset(o, 0, 64 * sizeof *o);
                o[0] = (int16_t)nearest_value(x[0], qf[0], 2047);
            }
            int last_nonzero = 0;
            for (uint64_t m = kept; m; m &= m - 1) {
                int i = lowest_bit(m), v = vals[i][l];
                if (o) o[ZIGZAG[i]] = (int16_t)v;
                if (ac_freq) count_ac_symbol(ac_freq, i - last_nonzero - 1, v);
                last_nonzero = i;
            }
            if (ac_freq && last_nonzero < 63) ac_freq[0x00]++;
        }
    }
}
#endif

/* semjpeg_rdo_decisions that also adds the AC symbol counts of the blocks it writes to ac_freq (257 int64;
 * NULL: no counting), as semjpeg_ac_frequencies would count them. start == NULL: the start values are the
 * nearest ones, round(x / q) (also for the DC); out == NULL (with ac_freq): count only.
 *
 * Only the "candidate" positions, where the start value or the nearest one is nonzero, are visited: elsewhere
 * the only choice is 0 at cost w x^2, and the end-of-block search need not look there (moving the last kept
 * position across such a position changes no total). With total(L) = sum of every zero cost + the sum of
 * (best cost - zero cost) over candidates up to L + lambda EOB [L < 63], the common first sum is left out.
 * Visiting only candidates made the kernel 1.8x faster than visiting all 63 positions with running sums (the
 * RDO passes of a 1024x768 size-matched encode from jpegli's coefficients: 53 -> 29 ms; same decisions but
 * for float near-ties); the mask and the inline rounding added about 1.2x. */
SIMD_CLONES int semjpeg_rdo_decisions_counted(const float *raw, const int16_t *start, int64_t n_blocks,
                                              const uint16_t *table, const float *block_weight,
                                              const float *freq_weight, float lam, const float *ac_bits,
                                              int16_t *out, int64_t *ac_freq) {
    if (!raw || !table || !block_weight || !freq_weight || !ac_bits || (!out && !ac_freq) || n_blocks < 0)
        return SEMJPEG_BAD_ARGUMENT;
    float qf[64], half_q[64];
    for (int i = 0; i < 64; i++) {
        if (table[i] == 0) return SEMJPEG_BAD_ARGUMENT;
        qf[i] = (float)table[i];
        half_q[i] = 0.5f * qf[i];
    }
    const float eob = lam * ac_bits[0x00], zrl = ac_bits[0xF0];
    float symbol_bits[256];
    for (int sym = 0; sym < 256; sym++) symbol_bits[sym] = ac_bits[sym] + (float)(sym & 15);
    int64_t first = 0;
#if RDO_AVX2
    if (!start && lam != 0.0f && __builtin_cpu_supports("avx2")) {
        first = n_blocks & ~(int64_t)7;
        rdo_nearest_avx2(raw, first, qf, half_q, block_weight, freq_weight, lam, eob, zrl, symbol_bits, out, ac_freq);
    }
#endif
    for (int64_t b = first; b < n_blocks; b++) {
        const float *x = raw + 64 * b;
        const int16_t *k = start ? start + 64 * b : NULL;
        /* candidates as a bit mask in natural order, then moved to zigzag positions (iterated in order) */
        uint64_t natural = rdo_candidates(x, half_q);
        if (k)
            for (int n = 1; n < 64; n++) natural |= (uint64_t)(k[n] != 0) << n;
        natural &= ~(uint64_t)1; /* the DC is not decided here */
        uint64_t zigzag = 0;
        for (uint64_t bits = natural; bits; bits &= bits - 1)
            zigzag |= (uint64_t)1 << ZIGZAG_POSITION[lowest_bit(bits)];
        int pos[64], val[64], m = 0;
        int prev = 0; /* zigzag index of the previous non-zero start value (0: the DC) */
        float prefix = 0.0f, best_total = eob; /* L = 0 */
        int last = 0;
        const float wb = block_weight[b];
        if (!k && lam == 0.0f) { /* no rate term: every choice is the nearest value (equal-cost ties keep it) */
            for (; zigzag; zigzag &= zigzag - 1) {
                int i = lowest_bit(zigzag), n = ZIGZAG[i];
                int v = nearest_value(x[n], qf[n], 1023);
                pos[m] = i;
                val[m++] = v;
                last = v ? i : last;
            }
            zigzag = 0;
        }
        for (; zigzag; zigzag &= zigzag - 1) {
            int i = lowest_bit(zigzag), n = ZIGZAG[i];
            float q = qf[n], xi = x[n], w = wb * freq_weight[n];
            int nearest = nearest_value(xi, q, 1023);
            int ki = k ? k[n] : nearest, run = i - prev - 1;
            float zc = w * xi * xi;
            float run_bits = run >= 16 ? (float)(run >> 4) * zrl : 0.0f;
            int r16 = (run & 15) << 4;
            int lower = ki - (ki > 0) + (ki < 0);
            /* candidates in the order start value, one lower, 0, nearest; a later one replaces the best only
             * when strictly cheaper, and a value already tried is skipped (the same cost). The cost of 0 is
             * zc (w e^2 + lambda * 0 with e = x). (Computing both costs and selecting with bit masks instead
             * of branches was 1.2x slower.) */
            float bc = ki ? rdo_cost(xi, ki, q, w, lam, symbol_bits, r16, run_bits) : zc;
            int bv = ki;
            if (lower != ki) {
                float c = lower ? rdo_cost(xi, lower, q, w, lam, symbol_bits, r16, run_bits) : zc;
                if (c < bc) { bc = c; bv = lower; }
            }
            if (ki && lower && zc < bc) { bc = zc; bv = 0; }
            if (k && nearest && nearest != ki && nearest != lower) { /* jpegli's start values only */
                float c = rdo_cost(xi, nearest, q, w, lam, symbol_bits, r16, run_bits);
                if (c < bc) { bc = c; bv = nearest; }
            }
            if (ki) prev = i;
            pos[m] = i;
            val[m++] = bv;
            prefix += bc - zc;
            float total = prefix + (i < 63 ? eob : 0.0f);
            int better = total < best_total;
            best_total = better ? total : best_total;
            last = better ? i : last;
        }
        if (prefix < best_total) last = 63; /* keeping everything codes no EOB (lambda = 0: prefix = 0) */
        if (out) {
            int16_t *o = out + 64 * b;
            memset(o, 0, 64 * sizeof *o);
            if (k) {
                o[0] = k[0];
            } else {
                o[0] = (int16_t)nearest_value(x[0], qf[0], 2047);
            }
            for (int j = 0; j < m && pos[j] <= last; j++) o[ZIGZAG[pos[j]]] = (int16_t)val[j];
        }
        if (ac_freq) {
            int last_nonzero = 0;
            for (int j = 0; j < m && pos[j] <= last; j++) {
                if (!val[j]) continue;
                count_ac_symbol(ac_freq, pos[j] - last_nonzero - 1, val[j]);
                last_nonzero = pos[j];
            }
            if (last_nonzero < 63) ac_freq[0x00]++;
        }
    }
    return 0;
}
