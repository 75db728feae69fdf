/* Pixel deflection (Prakash 2019, Algorithm 2) and its R-CAM-targeted variant (sec 4.8).
 *
 * PRNG: xoshiro256** (Blackman & Vigna), its 256-bit state expanded from one 64-bit seed with splitmix64.
 * Draw order, per deflection attempt (the Python oracle in tests/test_defense_filters.py replays it):
 *   y = below(height), x = below(width)                 pixel p, uniform over the image
 *   [targeted only] u = unit(); skip p when u < saliency[y, x]   (deflect where the draw exceeds the map)
 *   ny = y0 + below(y1 - y0 + 1), nx = x0 + below(x1 - x0 + 1)   neighbour n, uniform over the window
 *                                                        of apothem `window` clipped to the image
 *   dst[p] = src[n]                                      read from the unmodified input (I' <- I)
 * below(n) = ((next() >> 32) * n) >> 32 (Lemire's multiply-shift; bias < n / 2^32), unit() = (next() >> 40) / 2^24.
 * per_channel != 0 repeats the attempt independently for each channel (as in the authors' released code);
 * otherwise all channels of p move together (Algorithm 2 as written).
 * Arrays are C-contiguous HxWxC with elements of elem_bytes bytes and must not overlap; the caller copies src to dst
 * first. The generator state (filters_deflection_seed) is read and written back, so a run of K attempts can be
 * split into calls of fewer attempts with the same result (the Python wrapper does, so that Ctrl-C is handled
 * between calls). Returns the number of values (pixels, or channel values when per_channel) actually deflected,
 * or -1 on bad arguments. */
#include <stdint.h>
#include <string.h>
#include "pixel_deflection.h"

uint64_t filters_splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static inline uint64_t xoshiro_next(uint64_t s[4]) {
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

static inline int32_t below(uint64_t s[4], int32_t n) {
    return (int32_t)(((xoshiro_next(s) >> 32) * (uint64_t)n) >> 32);
}

static inline float unit(uint64_t s[4]) { return (float)(xoshiro_next(s) >> 40) * (1.0f / 16777216.0f); }

void filters_deflection_seed(uint64_t seed, uint64_t state[4]) {
    uint64_t sm = seed;
    for (int i = 0; i < 4; i++) state[i] = filters_splitmix64(&sm);
}

int64_t filters_pixel_deflection(const filters_deflection_args *a, int64_t attempts, uint64_t state[4]) {
    if (!a || !a->src || !a->dst || !state || a->height < 1 || a->width < 1 || a->channels < 1 || a->channels > 4 ||
        a->elem_bytes < 1 || a->window < 0 || attempts < 0)
        return -1;
    uint64_t s[4] = {state[0], state[1], state[2], state[3]};
    const int32_t height = a->height, width = a->width, window = a->window;
    const float *saliency = a->saliency;
    const int32_t copies = a->per_channel ? a->channels : 1;
    const size_t pixel_bytes = (size_t)a->channels * (size_t)a->elem_bytes;
    const size_t move_bytes = a->per_channel ? (size_t)a->elem_bytes : pixel_bytes;
    int64_t moved = 0;
    for (int64_t i = 0; i < attempts; i++) {
        for (int32_t c = 0; c < copies; c++) {
            int32_t y = below(s, height), x = below(s, width);
            if (saliency && unit(s) < saliency[(size_t)y * width + x]) continue;
            int32_t y0 = y - window < 0 ? 0 : y - window, y1 = y + window >= height ? height - 1 : y + window;
            int32_t x0 = x - window < 0 ? 0 : x - window, x1 = x + window >= width ? width - 1 : x + window;
            int32_t ny = y0 + below(s, y1 - y0 + 1), nx = x0 + below(s, x1 - x0 + 1);
            size_t offset = (size_t)c * (size_t)a->elem_bytes;
            memcpy(a->dst + ((size_t)y * width + x) * pixel_bytes + offset,
                   a->src + ((size_t)ny * width + nx) * pixel_bytes + offset, move_bytes);
            moved++;
        }
    }
    for (int i = 0; i < 4; i++) state[i] = s[i];
    return moved;
}

/* Where the values of x[0..n) lie: 0 when all are in [0, 1], 1 when one is NaN or infinite, else 2 (one lies
 * outside [0, 1]). Validates saliency maps in one vectorised pass. */
int32_t filters_unit_interval_check(const float *x, int64_t n) {
    int32_t outside = 0;
    for (int64_t i = 0; i < n; i++) outside |= !(x[i] >= 0.0f && x[i] <= 1.0f); /* NaN fails both */
    if (!outside) return 0;
    for (int64_t i = 0; i < n; i++)
        if (x[i] != x[i] || x[i] - x[i] != 0.0f) return 1; /* NaN, or inf (inf - inf is NaN) */
    return 2;
}
