typedef struct { const uint8_t *src; uint8_t *dst; int32_t height; int32_t width; int32_t channels; int32_t elem_bytes; int32_t window; const float *saliency; int32_t per_channel; } filters_deflection_args;
uint64_t filters_splitmix64(uint64_t *state);
void filters_deflection_seed(uint64_t seed, uint64_t state[4]);
int64_t filters_pixel_deflection(const filters_deflection_args *args, int64_t attempts, uint64_t state[4]);
int32_t filters_unit_interval_check(const float *x, int64_t n);
