/* A core's FMA ceiling: 12 independent FMA chains in registers, AVX2 (8 floats) and AVX-512
 * (16 floats), GFLOP/s of each, three rounds. Tells whether a CPU runs 512-bit FMAs at full
 * width (a Xeon with two FMA ports: about twice the AVX2 figure) or splits them in two
 * (Zen 4: the same figure), which decides whether gemm's AVX-512 kernels pay.
 *
 *   gcc -O2 bench/fma_peak.c -o /tmp/fma_peak && /tmp/fma_peak
 *
 * The chains are separate variables, not an array: with an array gcc -O2 keeps them in
 * memory and the loop measures store forwarding instead. Run it on a quiet machine: with
 * the other core busy the figures drop. */
#include <immintrin.h>
#include <stdio.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* 12 chains a0..a11 of type T, each a0 = F(a0, b, c) per round. */
#define CHAINS(T, SET)                                                                     \
    T a0 = SET(0.1f), a1 = SET(0.2f), a2 = SET(0.3f), a3 = SET(0.4f), a4 = SET(0.5f),      \
      a5 = SET(0.6f), a6 = SET(0.7f), a7 = SET(0.8f), a8 = SET(0.9f), a9 = SET(1.1f),      \
      a10 = SET(1.2f), a11 = SET(1.3f);                                                    \
    T b = SET(0.9999f), c = SET(1e-6f);
#define STEP(F)                                                                            \
    a0 = F(a0, b, c); a1 = F(a1, b, c); a2 = F(a2, b, c); a3 = F(a3, b, c);                \
    a4 = F(a4, b, c); a5 = F(a5, b, c); a6 = F(a6, b, c); a7 = F(a7, b, c);                \
    a8 = F(a8, b, c); a9 = F(a9, b, c); a10 = F(a10, b, c); a11 = F(a11, b, c);
/* Sum the chains so the compiler cannot drop them. */
#define KEEP(ADD)                                                                          \
    ADD(ADD(ADD(ADD(a0, a1), ADD(a2, a3)), ADD(ADD(a4, a5), ADD(a6, a7))),                 \
        ADD(ADD(a8, a9), ADD(a10, a11)))

__attribute__((target("avx2,fma"), noinline)) static double avx2(long n) {
    CHAINS(__m256, _mm256_set1_ps)
    double t = now();
    for (long k = 0; k < n; k++) {
        STEP(_mm256_fmadd_ps)
    }
    t = now() - t;
    __m256 s = KEEP(_mm256_add_ps);
    if (s[0] == 12345.0f)
        puts("");
    return n * 12.0 * 8 * 2 / t / 1e9;
}

__attribute__((target("avx512f"), noinline)) static double avx512(long n) {
    CHAINS(__m512, _mm512_set1_ps)
    double t = now();
    for (long k = 0; k < n; k++) {
        STEP(_mm512_fmadd_ps)
    }
    t = now() - t;
    __m512 s = KEEP(_mm512_add_ps);
    if (s[0] == 12345.0f)
        puts("");
    return n * 12.0 * 16 * 2 / t / 1e9;
}

int main(void) {
    __builtin_cpu_init();
    for (int r = 0; r < 3; r++) {
        printf("AVX2 %.1f GFLOP/s", avx2(200000000));
        if (__builtin_cpu_supports("avx512f"))
            printf("   AVX-512 %.1f GFLOP/s", avx512(100000000));
        printf("\n");
    }
    return 0;
}
