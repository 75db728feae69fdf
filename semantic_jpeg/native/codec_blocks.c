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
            for (int cx = 0, x = 0; cx < cells_w; cx++) {
                int x1 = x + cell_w < width ? x + cell_w : width;
                double acc = 0.0;
                for (; x < x1; x++) acc += row[x];
                sum[cx] += acc;
            }
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

/* DCT-domain counterpart of Algorithm 1 for one component. raw holds the coefficients quantised with a
 * unit table (the rounded DCT). A block at level n keeps exactly the coefficients its level's quantiser
 * (step q_n) would keep, each at the frame's precision (step q_f):
 *     out = |raw| < q_n / 2 ? 0 : round(raw / q_f)
 * Rounding survivors to multiples of q_n instead would add error without saving bits, because they are
 * written in units of q_f either way; the rate saving of a coarse level comes from its zeros.
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
                int c = raw[off + i];
                out[off + i] = 2 * abs(c) < qn[i] ? 0 : (int16_t)lrint((double)c / frame_table[i]);
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

/* ---- Baseline Huffman entropy decoding (ITU T.81 Annex F.2.2), the inverse of the coder above ---- */

typedef struct {
    const uint8_t *data;
    int64_t pos, length;
    uint32_t acc;
    int nbits;
    int hit_marker;
    int64_t pad_bytes; /* zero bytes fed after the data ended or a marker was reached */
} BitReader;

static void fill_bits(BitReader *r) {
    while (r->nbits <= 24) {
        uint32_t byte = 0;
        if (r->hit_marker || r->pos >= r->length) {
            r->pad_bytes++;
        } else {
            byte = r->data[r->pos];
            if (byte == 0xFF) {
                uint8_t next = r->pos + 1 < r->length ? r->data[r->pos + 1] : 0xD9;
                if (next == 0x00) r->pos += 2;
                else { r->hit_marker = 1; byte = 0; r->pad_bytes++; }
            } else {
                r->pos++;
            }
        }
        r->acc |= byte << (24 - r->nbits);
        r->nbits += 8;
    }
}

static uint32_t get_bits(BitReader *r, int n) {
    if (n == 0) return 0;
    fill_bits(r);
    uint32_t v = r->acc >> (32 - n);
    r->acc <<= n;
    r->nbits -= n;
    return v;
}

#define LOOKAHEAD 9

typedef struct {
    int32_t maxcode[18];
    int32_t valptr[17];
    int32_t mincode[17];
    const uint8_t *values;
    uint16_t look[1 << LOOKAHEAD]; /* (length << 8) | symbol for codes of <= LOOKAHEAD bits, else 0 */
} HuffDecoder;

static void make_decoder(HuffDecoder *d, const uint8_t *bits, const uint8_t *values) {
    int code = 0, k = 0;
    memset(d->look, 0, sizeof d->look);
    for (int l = 1; l <= 16; l++) {
        d->valptr[l] = k;
        d->mincode[l] = code;
        for (int i = 0; i < bits[l - 1]; i++, code++, k++) {
            if (l <= LOOKAHEAD) {
                int shift = LOOKAHEAD - l;
                for (int s = 0; s < (1 << shift); s++)
                    d->look[(code << shift) | s] = (uint16_t)((l << 8) | values[k]);
            }
        }
        d->maxcode[l] = bits[l - 1] ? code - 1 : -1;
        code <<= 1;
    }
    d->maxcode[17] = 0x7FFFFFFF;
    d->values = values;
}

/* Next Huffman symbol: one table lookup for codes of up to LOOKAHEAD bits, else a search over lengths. */
static int decode_symbol(BitReader *r, const HuffDecoder *d) {
    fill_bits(r); /* at least 25 bits available */
    uint16_t e = d->look[r->acc >> (32 - LOOKAHEAD)];
    if (e) {
        int l = e >> 8;
        r->acc <<= l;
        r->nbits -= l;
        return e & 0xFF;
    }
    for (int l = LOOKAHEAD + 1; l <= 16; l++) {
        int32_t code = (int32_t)(r->acc >> (32 - l));
        if (code <= d->maxcode[l]) {
            r->acc <<= l;
            r->nbits -= l;
            return d->values[d->valptr[l] + code - d->mincode[l]];
        }
    }
    return -1; /* no such code: corrupt data */
}

static int extend(uint32_t v, int s) { return s == 0 ? 0 : (v < (1u << (s - 1)) ? (int)v - (1 << s) + 1 : (int)v); }

static int decode_block(BitReader *r, int16_t *blk, int *last_dc, const HuffDecoder *dc, const HuffDecoder *ac) {
    int s = decode_symbol(r, dc);
    if (s < 0 || s > 11) return -2;
    *last_dc += extend(get_bits(r, s), s);
    memset(blk, 0, 64 * sizeof(int16_t));
    blk[0] = (int16_t)*last_dc;
    for (int k = 1; k < 64;) {
        int rs = decode_symbol(r, ac);
        if (rs < 0) return -2;
        int run = rs >> 4, size = rs & 15;
        if (size == 0) {
            if (run != 15) break; /* EOB */
            k += 16;
            continue;
        }
        k += run;
        if (k > 63) return -2;
        blk[ZIGZAG[k]] = (int16_t)extend(get_bits(r, size), size);
        k++;
    }
    return 0;
}

/* Decode one baseline scan into coefficient arrays (natural order, blocks_h x blocks_w x 64 per component).
 * Returns 0, -1 when the data ends (a marker is reached) before the last block, -2 for an invalid code. */
int semjpeg_decode_baseline_scan(const uint8_t *data, int64_t length, int n_components, int16_t **coefs,
                                 const int *blocks_h, const int *blocks_w, const int *samp_h, const int *samp_v,
                                 const uint8_t **dc_bits, const uint8_t **dc_values, const uint8_t **ac_bits,
                                 const uint8_t **ac_values, int mcus_v, int mcus_h) {
    BitReader r = {data, 0, length, 0, 0, 0, 0};
    HuffDecoder dc[4], ac[4];
    int last_dc[4] = {0, 0, 0, 0};
    int16_t dummy[64];
    if (n_components < 1 || n_components > 4) return -4;
    for (int c = 0; c < n_components; c++) {
        make_decoder(&dc[c], dc_bits[c], dc_values[c]);
        make_decoder(&ac[c], ac_bits[c], ac_values[c]);
    }
    if (n_components == 1) {
        for (int b = 0; b < blocks_h[0] * blocks_w[0]; b++) {
            if (decode_block(&r, coefs[0] + (size_t)b * 64, &last_dc[0], &dc[0], &ac[0])) return -2;
        }
    } else {
        for (int my = 0; my < mcus_v; my++)
            for (int mx = 0; mx < mcus_h; mx++)
                for (int c = 0; c < n_components; c++)
                    for (int v = 0; v < samp_v[c]; v++)
                        for (int h = 0; h < samp_h[c]; h++) {
                            int by = my * samp_v[c] + v, bx = mx * samp_h[c] + h;
                            int16_t *blk = (by < blocks_h[c] && bx < blocks_w[c])
                                               ? coefs[c] + ((size_t)by * blocks_w[c] + bx) * 64
                                               : dummy;
                            if (decode_block(&r, blk, &last_dc[c], &dc[c], &ac[c])) return -2;
                        }
    }
    /* every bit consumed must have come from the data, not from the padding after its end */
    return r.pad_bytes * 8 - r.nbits > 0 ? -1 : 0;
}
