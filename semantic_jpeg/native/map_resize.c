/* Bilinear enlargement of a float32 map (the saliency models' maps, from feature resolution to the image).
 *
 * Separable, vertical pass first, with the sample positions computed by the caller: output row y blends
 * input rows top[y] and bottom[y] as a * (1 - fy[y]) + b * fy[y], then output column x blends the blended
 * row's columns left[x] and right[x] the same way with fx[x]. Same float32 operations, in the same order, as
 * the numpy version it replaces (onnx_models.image_input), one output array and no temporaries. */
#include <stdint.h>
#include <stdlib.h>
#include "map_resize.h"

int semjpeg_enlarge_bilinear(const float *src, int32_t h_in, int32_t w_in, float *dst, int32_t h_out, int32_t w_out,
                             const int32_t *top, const int32_t *bottom, const float *fy, const int32_t *left,
                             const int32_t *right, const float *fx) {
    if (h_in < 1 || w_in < 1 || h_out < 1 || w_out < 1) return -1;
    for (int32_t y = 0; y < h_out; y++)
        if (top[y] < 0 || top[y] >= h_in || bottom[y] < 0 || bottom[y] >= h_in) return -1;
    for (int32_t x = 0; x < w_out; x++)
        if (left[x] < 0 || left[x] >= w_in || right[x] < 0 || right[x] >= w_in) return -1;
    float *row = malloc(sizeof(float) * (size_t)w_in);
    if (!row) return -2;
    for (int32_t y = 0; y < h_out; y++) {
        const float *a = src + (size_t)top[y] * w_in, *b = src + (size_t)bottom[y] * w_in;
        float wa = 1.0f - fy[y], wb = fy[y];
        for (int32_t j = 0; j < w_in; j++) {
            float u = a[j] * wa, v = b[j] * wb;
            row[j] = u + v;
        }
        float *out = dst + (size_t)y * w_out;
        for (int32_t x = 0; x < w_out; x++) {
            float u = row[left[x]] * (1.0f - fx[x]), v = row[right[x]] * fx[x];
            out[x] = u + v;
        }
    }
    free(row);
    return 0;
}
