typedef struct { const float *a; const float *b; float *out; int64_t ni; int64_t nj; int64_t nr; int64_t nk; int64_t a_si; int64_t a_sr; int64_t b_sj; int64_t b_sr; int32_t conj_a; int32_t conj_b; } semjpeg_bl_cmac_args;
int32_t semjpeg_bl_cmac_f32(const semjpeg_bl_cmac_args *args);
