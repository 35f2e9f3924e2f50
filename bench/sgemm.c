/*
 * The C BLAS side of bench/README.md's GEMM table: cblas_sgemm (row-major, C = A B) on the
 * GEMM shapes ResNet's convolutions produce, median of 7 after a warm-up, in GFLOP/s.
 * Compare with the first lines of `cargo run --release --example bench_layers`.
 *
 *   apt-get install libopenblas-dev libopenblas0-pthread libblis-dev libblis4-pthread
 *   gcc -O2 bench/sgemm.c -o /tmp/sg_openblas -I/usr/include/x86_64-linux-gnu/openblas-pthread \
 *       -L/usr/lib/x86_64-linux-gnu/openblas-pthread -lopenblas
 *   gcc -O2 bench/sgemm.c -o /tmp/sg_blis -I/usr/include/blis \
 *       -L/usr/lib/x86_64-linux-gnu/blis-pthread -lblis -lpthread -lm
 *   OPENBLAS_NUM_THREADS=1 /tmp/sg_openblas; BLIS_NUM_THREADS=1 /tmp/sg_blis
 */

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void gemm(int m, int n, int k, const float *a, const float *b, float *c) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1, a, k, b, n, 0, c, n);
}

static int cmp(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

static void run(int m, int n, int k) {
    float *a = malloc(4L * m * k), *b = malloc(4L * k * n), *c = malloc(4L * m * n);
    for (long i = 0; i < (long)m * k; i++) a[i] = (i % 7) * 0.1f;
    for (long i = 0; i < (long)k * n; i++) b[i] = (i % 5) * 0.1f;
    double t[7];
    gemm(m, n, k, a, b, c);
    for (int r = 0; r < 7; r++) {
        double t0 = now();
        gemm(m, n, k, a, b, c);
        t[r] = now() - t0;
    }
    qsort(t, 7, sizeof t[0], cmp);
    printf("%5d x %5d x %5d : %.1f GFLOP/s\n", m, n, k, 2.0 * m * n * k / t[3] / 1e9);
    free(a);
    free(b);
    free(c);
}

int main(void) {
    int shapes[][3] = {{1024, 1024, 1024}, {512, 256, 4608}, {64, 4096, 147},
                       {64, 512, 64},      {128, 512, 128},  {256, 256, 256},
                       {512, 64, 512},     {64, 147, 4096},  {512, 4608, 256}};
    for (unsigned i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        run(shapes[i][0], shapes[i][1], shapes[i][2]);
    return 0;
}
