uint64_t filters_splitmix64(uint64_t *state);
int64_t filters_pixel_deflection(const uint8_t *src, uint8_t *dst, int32_t height, int32_t width, int32_t channels, int32_t elem_bytes, int64_t deflections, int32_t window, const float *saliency, int32_t per_channel, uint64_t seed);
int32_t filters_unit_interval_check(const float *x, int64_t n);
