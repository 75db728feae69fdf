/* Shared by the native kernels; not an API header (build_native.py reads only the *.h beside the sources).
 *
 * SIMD_CLONES: on x86-64 with GCC or Clang on glibc, the function is compiled twice, for AVX2 and for the
 * baseline, and the loader picks the copy the CPU supports. AVX2 without FMA: both copies round identically,
 * so results do not depend on the CPU. Elsewhere it expands to nothing, and so it does when the module is built
 * with -DSEMANTIC_JPEG_NO_SIMD_CLONES (tests/test_native_simd.py builds that copy to check the claim). */
#if defined(__x86_64__) && !defined(SEMANTIC_JPEG_NO_SIMD_CLONES) && defined(__GLIBC__) && (defined(__GNUC__) || defined(__clang__))
#define SIMD_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define SIMD_CLONES
#endif
