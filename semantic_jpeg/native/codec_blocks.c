/* Native block kernels of the semantic JPEG codec (paper 000, sec 2.4, Algorithm 1, eq. 2.7).
 *
 * A "cell" is the unit that takes one saliency level: an 8x8 block, or the MCU (16x16 for 4:2:0) when
 * chroma is subsampled, so that every block of an MCU, luma and chroma, is coded at the same level.
 * Coefficient arrays are int16 [blocks_h][blocks_w][64] in natural (row-major) order, as jpeglib reads them.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "codec_blocks.h"

/* Level of each cell = floor(mean saliency * levels), clipped to [0, levels-1]. Edge cells average only
 * the pixels that exist. Returns 0, or -1 on bad arguments. */
int semjpeg_block_levels(const float *saliency, int height, int width, int cell_h, int cell_w, int levels,
                         uint8_t *out) {
    if (height <= 0 || width <= 0 || cell_h <= 0 || cell_w <= 0 || levels <= 0 || levels > 255) return -1;
    int cells_h = (height + cell_h - 1) / cell_h, cells_w = (width + cell_w - 1) / cell_w;
    double *sum = calloc((size_t)cells_w, sizeof(double));
    if (!sum) return -1;
    for (int cy = 0; cy < cells_h; cy++) {
        int y0 = cy * cell_h, y1 = y0 + cell_h < height ? y0 + cell_h : height;
        memset(sum, 0, sizeof(double) * (size_t)cells_w);
        for (int y = y0; y < y1; y++) {
            const float *row = saliency + (size_t)y * width;
            for (int x = 0; x < width; x++) sum[x / cell_w] += row[x];
        }
        for (int cx = 0; cx < cells_w; cx++) {
            int x0 = cx * cell_w, x1 = x0 + cell_w < width ? x0 + cell_w : width;
            double mean = sum[cx] / ((double)(y1 - y0) * (x1 - x0));
            int level = (int)floor(mean * levels);
            out[(size_t)cy * cells_w + cx] = (uint8_t)(level < 0 ? 0 : level >= levels ? levels - 1 : level);
        }
    }
    free(sum);
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

/* DCT-domain equivalent of Algorithm 1 for one component. raw holds the coefficients quantised with a
 * unit table (i.e. the rounded DCT). A block at level n is quantised with its level's step q_n, then
 * expressed in units of the frame's step q_f:  out = round(round(raw / q_n) * q_n / q_f).
 * Where q_n <= q_f the frame's own step is the coarser one and out = round(raw / q_f).
 * level_tables: levels x 64 steps, frame_table: 64 steps, both natural order. Block (by, bx) belongs to
 * cell (by / blocks_per_cell_v, bx / blocks_per_cell_h); blocks past the cell grid take the last cell. */
int semjpeg_requantize(const int16_t *raw, int blocks_h, int blocks_w, const uint8_t *cell_level, int cells_h,
                       int cells_w, int blocks_per_cell_v, int blocks_per_cell_h, int levels,
                       const uint16_t *level_tables, const uint16_t *frame_table, int16_t *out) {
    if (blocks_h <= 0 || blocks_w <= 0 || cells_h <= 0 || cells_w <= 0 || levels <= 0 ||
        blocks_per_cell_v <= 0 || blocks_per_cell_h <= 0)
        return -1;
    for (int i = 0; i < 64; i++)
        if (frame_table[i] == 0) return -1;
    for (int i = 0; i < levels * 64; i++)
        if (level_tables[i] == 0) return -1;
    for (int by = 0; by < blocks_h; by++) {
        int cy = by / blocks_per_cell_v;
        if (cy >= cells_h) cy = cells_h - 1;
        for (int bx = 0; bx < blocks_w; bx++) {
            int cx = bx / blocks_per_cell_h;
            if (cx >= cells_w) cx = cells_w - 1;
            int level = cell_level[(size_t)cy * cells_w + cx];
            if (level >= levels) return -1;
            const uint16_t *qn = level_tables + 64 * level;
            size_t off = ((size_t)by * blocks_w + bx) * 64;
            for (int i = 0; i < 64; i++) {
                double c = raw[off + i];
                double qf = frame_table[i];
                double v = qn[i] > qf ? nearbyint(c / qn[i]) * qn[i] / qf : c / qf;
                out[off + i] = (int16_t)lrint(v);
            }
        }
    }
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
    uint64_t acc; /* bit accumulator */
    int nbits;
    int error;
} BitWriter;

static void put_byte(BitWriter *w, uint8_t b) {
    if (w->len + 2 > w->capacity) { w->error = 1; return; }
    w->out[w->len++] = b;
    if (b == 0xFF) w->out[w->len++] = 0x00; /* byte stuffing */
}

static void put_bits(BitWriter *w, uint32_t code, int size) {
    if (size == 0) return;
    w->acc = (w->acc << size) | (code & ((1u << size) - 1));
    w->nbits += size;
    while (w->nbits >= 8) {
        w->nbits -= 8;
        put_byte(w, (uint8_t)(w->acc >> w->nbits));
    }
}

static int bit_length(int v) {
    int n = 0;
    if (v < 0) v = -v;
    while (v) { n++; v >>= 1; }
    return n;
}

/* Emit one symbol; a symbol the table lacks (size 0) is an error, never a silently wrong stream. */
static void put_symbol(BitWriter *w, const uint32_t *code, const uint8_t *size, int symbol) {
    if (size[symbol] == 0) { w->error = 2; return; }
    put_bits(w, code[symbol], size[symbol]);
}

static void put_value(BitWriter *w, int v, int nbits) {
    put_bits(w, (uint32_t)(v < 0 ? v - 1 : v), nbits); /* F.1.2.1: negative values as v-1 in nbits */
}

static void encode_block(BitWriter *w, const int16_t *blk, int *last_dc, const uint32_t *dcc, const uint8_t *dcs,
                         const uint32_t *acc, const uint8_t *acs) {
    int diff = blk[0] - *last_dc;
    *last_dc = blk[0];
    int n = bit_length(diff);
    if (n > 11) { w->error = 3; return; }
    put_symbol(w, dcc, dcs, n);
    put_value(w, diff, n);
    int run = 0;
    for (int k = 1; k < 64; k++) {
        int v = blk[ZIGZAG[k]];
        if (v == 0) { run++; continue; }
        while (run > 15) { put_symbol(w, acc, acs, 0xF0); run -= 16; }
        n = bit_length(v);
        if (n > 10) { w->error = 3; return; }
        put_symbol(w, acc, acs, (run << 4) | n);
        put_value(w, v, n);
        run = 0;
    }
    if (run > 0) put_symbol(w, acc, acs, 0x00); /* EOB */
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
    if (w.nbits > 0) put_bits(&w, 0x7F, 8 - w.nbits); /* pad the last byte with 1-bits */
    if (w.error == 1) return -1;
    if (w.error == 2) return -2;
    if (w.error == 3) return -3;
    return w.len;
}
