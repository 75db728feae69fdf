void filters_haar_forward(const float *src, float *approx, float *detail_rows, float *detail_cols, float *detail_diag, int32_t planes, int32_t height, int32_t width);
void filters_haar_inverse(const float *approx, const float *detail_rows, const float *detail_cols, const float *detail_diag, float *dst, int32_t planes, int32_t height, int32_t width);
void filters_to_planes(const uint8_t *src, int32_t src_is_float, float *planes, int64_t pixels, int32_t channels, const float *matrix, float scale);
void filters_from_planes(const float *planes, uint8_t *dst, int32_t dst_is_float, int64_t pixels, int32_t channels, const float *matrix);
int32_t filters_pixels_to_haar(const uint8_t *src, int32_t src_is_float, int32_t height, int32_t width, int32_t channels, const float *matrix, float scale, float *bands, double *sum_squares);
int32_t filters_haar_to_pixels(const float *bands, int32_t height, int32_t width, int32_t channels, const float *thresholds, int32_t hard, const float *matrix, uint8_t *dst, int32_t dst_is_float);
typedef struct { const uint8_t *src; int32_t src_is_float; int32_t height; int32_t width; int32_t channels; const float *to_planes; float scale; const float *to_pixels; int32_t levels; const double *variance; int32_t method; double visu_factor; int32_t hard; uint8_t *dst; int32_t dst_is_float; float *workspace; } filters_haar_denoise_args;
int32_t filters_haar_denoise(const filters_haar_denoise_args *args);
int64_t filters_haar_denoise_workspace(int32_t height, int32_t width, int32_t channels, int32_t levels);
