/* Native block kernels of the semantic JPEG codec (paper 000, sec 2.4, Algorithm 1, eq. 2.7).
 *
 * A "cell" is the unit that takes one saliency level: an 8x8 block, or the MCU (16x16 for 4:2:0) when
 * chroma is subsampled, so that every block of an MCU, luma and chroma, is coded at the same level.
 * Coefficient arrays are [blocks_h][blocks_w][64] in natural (row-major) order, as jpeglib reads them: float
 * for the exact DCT, int16 for quantised coefficients.
 * Sections: cell levels and the mosaic of Algorithm 1; the forward transform (colour conversion, downsampling,
 * DCT); per-block requantisation; baseline Huffman entropy coding.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "codec_blocks.h"
#if defined(__SSE2__)
#include <emmintrin.h>
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

/* One 8-point DCT pass (Arai-Agui-Nakajima, as libjpeg's jfdctflt.c) on the 8 columns of an 8x8 block
 * at once: d[k] is row k, so every statement works on 8 contiguous floats and vectorises. Outputs are
 * scaled by 8 * aan(u) (undone in dct_block). */
static void aan_columns(float d[8][8]) {
    for (int j = 0; j < 8; j++) {
        float t0 = d[0][j] + d[7][j], t7 = d[0][j] - d[7][j], t1 = d[1][j] + d[6][j], t6 = d[1][j] - d[6][j];
        float t2 = d[2][j] + d[5][j], t5 = d[2][j] - d[5][j], t3 = d[3][j] + d[4][j], t4 = d[3][j] - d[4][j];
        float t10 = t0 + t3, t13 = t0 - t3, t11 = t1 + t2, t12 = t1 - t2;
        d[0][j] = t10 + t11;
        d[4][j] = t10 - t11;
        float z1 = (t12 + t13) * 0.707106781f;
        d[2][j] = t13 + z1;
        d[6][j] = t13 - z1;
        t10 = t4 + t5;
        t11 = t5 + t6;
        t12 = t6 + t7;
        float z5 = (t10 - t12) * 0.382683433f, z2 = 0.541196100f * t10 + z5, z4 = 1.306562965f * t12 + z5;
        float z3 = t11 * 0.707106781f, z11 = t7 + z3, z13 = t7 - z3;
        d[5][j] = z13 + z2;
        d[3][j] = z13 - z2;
        d[1][j] = z11 + z4;
        d[7][j] = z11 - z4;
    }
}

static void transpose8(float d[8][8]) {
    for (int i = 0; i < 8; i++)
        for (int j = i + 1; j < 8; j++) {
            float t = d[i][j];
            d[i][j] = d[j][i];
            d[j][i] = t;
        }
}

/* scale[u * 8 + v] = 1 / (8 aan(u) aan(v)), aan(0) = 1, aan(k) = sqrt(2) cos(k pi / 16): turns the AAN
 * outputs into the orthonormal DCT. */
static void aan_scale(float scale[64]) {
    double aan[8];
    for (int k = 0; k < 8; k++) aan[k] = k == 0 ? 1.0 : sqrt(2.0) * cos(k * 3.14159265358979323846 / 16.0);
    for (int u = 0; u < 8; u++)
        for (int v = 0; v < 8; v++) scale[u * 8 + v] = (float)(1.0 / (8.0 * aan[u] * aan[v]));
}

/* out (natural order, u = vertical frequency) = the orthonormal DCT of the 8x8 block at src (row stride
 * `stride` floats). */
static void dct_block(const float *restrict src, int stride, const float *restrict scale, float *restrict out) {
    float d[8][8];
    for (int r = 0; r < 8; r++) memcpy(d[r], src + (size_t)r * stride, sizeof d[r]);
    aan_columns(d); /* d[u][x] */
    transpose8(d);  /* d[x][u] */
    aan_columns(d); /* d[v][u] */
    for (int u = 0; u < 8; u++)
        for (int v = 0; v < 8; v++) out[u * 8 + v] = d[v][u] * scale[u * 8 + v];
}

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
        for (size_t i = 0; i < n; i++) o[i] = k0 * a[i] + k1 * b[i] + k2 * c[i] + off;
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

/* level_tables: levels x 64 steps, frame_table: 64 steps, natural order. Returns 0, -1 on bad arguments, -2
 * when out of memory; on success quantiser_free must follow. */
static int quantiser_init(Quantiser *q, const uint8_t *cell_level, int cells_h, int cells_w, int per_cell_v,
                          int per_cell_h, int levels, const uint16_t *level_tables, const uint16_t *frame_table,
                          float deadzone) {
    if (cells_h <= 0 || cells_w <= 0 || levels <= 0 || levels > 255 || per_cell_v <= 0 || per_cell_h <= 0 ||
        !(deadzone >= 0.0f && deadzone <= 1.0f))
        return -1;
    for (int i = 0; i < 64; i++)
        if (frame_table[i] == 0) return -1;
    for (int i = 0; i < levels * 64; i++)
        if (level_tables[i] == 0) return -1;
    for (size_t i = 0; i < (size_t)cells_h * cells_w; i++)
        if (cell_level[i] >= levels) return -1;
    q->zero_below = malloc(sizeof(float) * 64 * (size_t)levels);
    if (!q->zero_below) return -2;
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

/* ---- The forward transform driver ---- */

/* x86-64 with GCC or Clang on glibc: an AVX2 copy of the per-MCU-row work, picked at load time (AVX2 without
 * FMA, so both copies round identically and a file does not depend on the CPU that wrote it). */
#if defined(__x86_64__) && defined(__GLIBC__) && (defined(__GNUC__) || defined(__clang__))
#define SIMD_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define SIMD_CLONES
#endif

typedef struct {
    const uint8_t *image;
    int height, width, channels, to_ycbcr, hmax, vmax;
    const int *samp_h, *samp_v, *blocks_h, *blocks_w;
    float **coefs;
    const Quantiser *quantisers;
    int16_t **out;
    float scale[64];
} Transform;

/* Colour conversion, downsampling, DCT and (with quantisers) requantisation of MCU row `my`. */
SIMD_CLONES static void transform_mcu_row(const Transform *t, McuRow *m, int my) {
    float block[64];
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
                size_t at = ((size_t)by * t->blocks_w[c] + bx) * 64;
                const float *src = m->plane + (size_t)v * 8 * cw + (size_t)bx * 8;
                if (t->quantisers) {
                    dct_block(src, cw, t->scale, block);
                    quantise_block(&t->quantisers[c], by, bx, block, t->out[c] + at);
                } else {
                    dct_block(src, cw, t->scale, t->coefs[c] + at);
                }
            }
        }
    }
}

/* image: height x width x channels uint8 (channels 1 or 3, equal to the number of components). to_ycbcr:
 * convert RGB to YCbCr (else code the channels as they are). samp_h/samp_v: sampling factors; every factor
 * must divide the largest. Each component's blocks as libjpeg counts them (blocks_h[c] x blocks_w[c]; blocks
 * past them, inside the last MCU, are the entropy coder's dummy blocks) go either to coefs[c] (float, 64 per
 * block) or, when quantisers is given, through quantisers[c] to out[c] (int16). */
static int forward_transform(const uint8_t *image, int height, int width, int channels, int to_ycbcr,
                             const int *samp_h, const int *samp_v, const int *blocks_h, const int *blocks_w,
                             float **coefs, const Quantiser *quantisers, int16_t **out) {
    if (height <= 0 || width <= 0 || (channels != 1 && channels != 3) || (to_ycbcr && channels != 3)) return -1;
    int hmax = 1, vmax = 1;
    for (int c = 0; c < channels; c++) {
        if (samp_h[c] < 1 || samp_h[c] > 4 || samp_v[c] < 1 || samp_v[c] > 4) return -1;
        if (samp_h[c] > hmax) hmax = samp_h[c];
        if (samp_v[c] > vmax) vmax = samp_v[c];
    }
    int mcus_h = (width + 8 * hmax - 1) / (8 * hmax), mcus_v = (height + 8 * vmax - 1) / (8 * vmax);
    for (int c = 0; c < channels; c++)
        if (hmax % samp_h[c] || vmax % samp_v[c] || blocks_w[c] > mcus_h * samp_h[c] ||
            blocks_h[c] > mcus_v * samp_v[c] || blocks_w[c] < 1 || blocks_h[c] < 1)
            return -1;
    Transform t = {image, height, width, channels, to_ycbcr, hmax, vmax, samp_h, samp_v, blocks_h, blocks_w,
                   coefs, quantisers, out, {0}};
    aan_scale(t.scale);
    McuRow m = {channels, 8 * vmax, mcus_h * 8 * hmax, NULL, NULL, NULL, 0, 0};
    size_t plane = (size_t)m.rows * m.pw;
    m.source = malloc(sizeof(float) * plane * (2 * (size_t)channels + 1));
    if (!m.source) return -2;
    m.boxed = m.source + plane * channels;
    m.plane = m.boxed + plane * channels;
    for (int my = 0; my < mcus_v; my++) transform_mcu_row(&t, &m, my);
    free(m.source);
    return 0;
}

/* The DCT of every block (float, for rate control, which requantises it several times). Returns 0, -1 on
 * bad arguments, -2 when out of memory. */
int semjpeg_forward_dct(const uint8_t *image, int height, int width, int channels, int to_ycbcr,
                        const int *samp_h, const int *samp_v, const int *blocks_h, const int *blocks_w,
                        float **coefs) {
    return forward_transform(image, height, width, channels, to_ycbcr, samp_h, samp_v, blocks_h, blocks_w, coefs,
                             NULL, NULL);
}

/* Transform and requantise in one pass (one encode, no rate control): equal to semjpeg_forward_dct followed by
 * semjpeg_requantize on each component, without the float coefficient arrays. level_tables[c] (levels x 64)
 * and frame_tables[c] (64) are component c's tables; a component's cell holds per_cell_v x per_cell_h of its
 * blocks (its sampling factors when there are several components, else 1 x 1). */
int semjpeg_forward_quantize(const uint8_t *image, int height, int width, int channels, int to_ycbcr,
                             const int *samp_h, const int *samp_v, const int *blocks_h, const int *blocks_w,
                             const uint8_t *cell_level, int cells_h, int cells_w, int levels,
                             const uint16_t **level_tables, const uint16_t **frame_tables, float deadzone,
                             int16_t **out) {
    if (channels != 1 && channels != 3) return -1;
    Quantiser quantisers[3];
    int rc = 0, ready = 0;
    for (; ready < channels && rc == 0; ready++) {
        int several = channels > 1;
        rc = quantiser_init(&quantisers[ready], cell_level, cells_h, cells_w, several ? samp_v[ready] : 1,
                            several ? samp_h[ready] : 1, levels, level_tables[ready], frame_tables[ready], deadzone);
        if (rc) break;
    }
    if (rc == 0)
        rc = forward_transform(image, height, width, channels, to_ycbcr, samp_h, samp_v, blocks_h, blocks_w, NULL,
                               quantisers, out);
    for (int c = 0; c < ready; c++) quantiser_free(&quantisers[c]);
    return rc;
}

/* Requantise one component's float DCT blocks (raw: blocks_h x blocks_w x 64, from semjpeg_forward_dct).
 * Returns 0, -1 on bad arguments (a zero step, a level >= levels), -2 when out of memory. */
int semjpeg_requantize(const float *raw, int blocks_h, int blocks_w, const uint8_t *cell_level, int cells_h,
                       int cells_w, int blocks_per_cell_v, int blocks_per_cell_h, int levels,
                       const uint16_t *level_tables, const uint16_t *frame_table, float deadzone, int16_t *out) {
    if (blocks_h <= 0 || blocks_w <= 0) return -1;
    Quantiser q;
    int rc = quantiser_init(&q, cell_level, cells_h, cells_w, blocks_per_cell_v, blocks_per_cell_h, levels,
                            level_tables, frame_table, deadzone);
    if (rc) return rc;
    for (int by = 0; by < blocks_h; by++)
        for (int bx = 0; bx < blocks_w; bx++) {
            size_t at = ((size_t)by * blocks_w + bx) * 64;
            quantise_block(&q, by, bx, raw + at, out + at);
        }
    quantiser_free(&q);
    return 0;
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

static inline int bit_length(int v) {
    if (v < 0) v = -v;
#if defined(__GNUC__) || defined(__clang__)
    return v ? 32 - __builtin_clz((unsigned)v) : 0;
#else
    int n = 0;
    while (v) { n++; v >>= 1; }
    return n;
#endif
}

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

/* ZIGZAG_BITS[j][b]: the bits of byte j of a natural-order mask (coefficient 8j + i in bit i of b) moved to
 * their zigzag positions. Filled once by zigzag_bits_init. */
static uint64_t ZIGZAG_BITS[8][256];

static void zigzag_bits_init(void) {
    static int ready = 0;
    if (ready) return;
    int position[64];
    for (int k = 0; k < 64; k++) position[ZIGZAG[k]] = k;
    for (int j = 0; j < 8; j++)
        for (int b = 0; b < 256; b++) {
            uint64_t m = 0;
            for (int i = 0; i < 8; i++)
                if (b >> i & 1) m |= (uint64_t)1 << position[8 * j + i];
            ZIGZAG_BITS[j][b] = m;
        }
    ready = 1;
}

/* Bit k set when the coefficient at zigzag position k is nonzero. */
static inline uint64_t zigzag_nonzero(const int16_t *blk) {
    uint64_t mask = 0;
#if defined(__SSE2__)
    const __m128i zero = _mm_setzero_si128();
    for (int j = 0; j < 4; j++) { /* 16 coefficients -> 16 bits of the natural-order mask */
        __m128i a = _mm_loadu_si128((const __m128i *)(blk + 16 * j));
        __m128i b = _mm_loadu_si128((const __m128i *)(blk + 16 * j + 8));
        unsigned bits = ~(unsigned)_mm_movemask_epi8(_mm_packs_epi16(_mm_cmpeq_epi16(a, zero), _mm_cmpeq_epi16(b, zero)));
        mask |= ZIGZAG_BITS[2 * j][bits & 0xFF] | ZIGZAG_BITS[2 * j + 1][(bits >> 8) & 0xFF];
    }
#else
    for (int j = 0; j < 8; j++) {
        unsigned b = 0;
        for (int i = 0; i < 8; i++) b |= (unsigned)(blk[8 * j + i] != 0) << i;
        mask |= ZIGZAG_BITS[j][b];
    }
#endif
    return mask;
}

/* One block: the DC difference, then (run, size) symbols for the nonzero AC coefficients in zigzag order,
 * visited through a bit mask of the nonzero ones (as libjpeg-turbo's coder does). */
static void encode_block(BitWriter *w, const int16_t *blk, int *last_dc, const uint32_t *dcc, const uint8_t *dcs,
                         const uint32_t *acc, const uint8_t *acs) {
    int diff = blk[0] - *last_dc;
    *last_dc = blk[0];
    int n = bit_length(diff);
    if (n > 11) { w->error = 3; return; }
    put_symbol_value(w, dcc, dcs, n, diff, n);
    int previous = 0; /* zigzag position of the last coefficient coded */
    for (uint64_t nonzero = zigzag_nonzero(blk) & ~(uint64_t)1; nonzero; nonzero &= nonzero - 1) {
        int k = lowest_bit(nonzero), run = k - previous - 1, v = blk[ZIGZAG[k]];
        for (; run > 15; run -= 16) put_symbol_value(w, acc, acs, 0xF0, 0, 0);
        n = bit_length(v);
        if (n > 10) { w->error = 3; return; }
        put_symbol_value(w, acc, acs, (run << 4) | n, v, n);
        previous = k;
    }
    if (previous < 63) put_symbol_value(w, acc, acs, 0x00, 0, 0); /* EOB */
}

/* Entropy-code one baseline scan. Single component: blocks in raster order. Several components: MCUs of
 * samp_v x samp_h blocks per component; blocks past a component's edge are dummy blocks (DC repeated,
 * AC zero, discarded by decoders). Returns the number of bytes written (padded with 1-bits), -1 when
 * capacity is too small, -2 when a symbol is missing from a table, -3 for a coefficient out of range. */
int64_t semjpeg_encode_baseline_scan(int n_components, const int16_t **coefs, const int *blocks_h,
                                     const int *blocks_w, const int *samp_h, const int *samp_v,
                                     const uint32_t **dc_code, const uint8_t **dc_size, const uint32_t **ac_code,
                                     const uint8_t **ac_size, int mcus_v, int mcus_h, uint8_t *out,
                                     int64_t capacity) {
    BitWriter w = {out, 0, capacity, 0, 0, 0};
    int last_dc[4] = {0, 0, 0, 0};
    static const int16_t zero_block[64] = {0};
    int16_t dummy[64];
    if (n_components < 1 || n_components > 4) return -4;
    zigzag_bits_init();
    if (n_components == 1) {
        for (int b = 0; b < blocks_h[0] * blocks_w[0] && !w.error; b++)
            encode_block(&w, coefs[0] + (size_t)b * 64, &last_dc[0], dc_code[0], dc_size[0], ac_code[0], ac_size[0]);
    } else {
        for (int my = 0; my < mcus_v && !w.error; my++)
            for (int mx = 0; mx < mcus_h && !w.error; mx++)
                for (int c = 0; c < n_components; c++)
                    for (int v = 0; v < samp_v[c]; v++)
                        for (int h = 0; h < samp_h[c]; h++) {
                            int by = my * samp_v[c] + v, bx = mx * samp_h[c] + h;
                            const int16_t *blk;
                            if (by < blocks_h[c] && bx < blocks_w[c]) {
                                blk = coefs[c] + ((size_t)by * blocks_w[c] + bx) * 64;
                            } else {
                                memcpy(dummy, zero_block, sizeof dummy);
                                dummy[0] = (int16_t)last_dc[c];
                                blk = dummy;
                            }
                            encode_block(&w, blk, &last_dc[c], dc_code[c], dc_size[c], ac_code[c], ac_size[c]);
                        }
    }
    int pad = (8 - w.nbits % 8) % 8;
    put_bits(&w, (1u << pad) - 1, pad); /* pad the last byte with 1-bits */
    while (w.nbits >= 8) {
        w.nbits -= 8;
        put_byte(&w, (uint8_t)(w.acc >> w.nbits));
    }
    if (w.error == 1) return -1;
    if (w.error == 2) return -2;
    if (w.error == 3) return -3;
    return w.len;
}
