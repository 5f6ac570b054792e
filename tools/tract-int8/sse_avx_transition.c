/* sse_avx_transition.c: the cost of one legacy-SSE load (`movq xmm, m64`) executed while the upper
 * halves of the ymm registers are dirty, against its VEX form (`vmovq`), in the loop shape of tract
 * 0.23.9's AVX2 int8 kernel (avx2_mmm_i32_8x8: movq, vpmovsxbw, ymm accumulate).
 *
 *   cc -O2 tools/tract-int8/sse_avx_transition.c -o /tmp/sse_avx && /tmp/sse_avx
 *
 * On the 2-core AMD EPYC (Zen 3) KVM guest of BENCHMARKS.md: legacy movq 112 ns per iteration,
 * vmovq 1.5 ns. x86-64 only (GCC/Clang inline assembly, AVX2). */
#include <stdint.h>
#include <stdio.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(void) {
    static int8_t buf[64] __attribute__((aligned(64)));
    const long n = 2000000;
    double best_legacy = 1e9, best_vex = 1e9;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = now();
        for (long i = 0; i < n; i++)
            __asm__ volatile("vpcmpeqd %%ymm0, %%ymm0, %%ymm0\n\t" /* dirty upper ymm state */
                             "movq (%0), %%xmm8\n\t"               /* legacy SSE encoding */
                             "vpmovsxbw %%xmm8, %%ymm8\n\t"
                             "vpaddw %%ymm8, %%ymm0, %%ymm0" ::"r"(buf)
                             : "xmm0", "xmm8");
        double t1 = now();
        for (long i = 0; i < n; i++)
            __asm__ volatile("vpcmpeqd %%ymm0, %%ymm0, %%ymm0\n\t"
                             "vmovq (%0), %%xmm8\n\t"              /* VEX encoding */
                             "vpmovsxbw %%xmm8, %%ymm8\n\t"
                             "vpaddw %%ymm8, %%ymm0, %%ymm0" ::"r"(buf)
                             : "xmm0", "xmm8");
        double t2 = now();
        if ((t1 - t0) < best_legacy) best_legacy = t1 - t0;
        if ((t2 - t1) < best_vex) best_vex = t2 - t1;
    }
    __asm__ volatile("vzeroupper");
    printf("legacy-SSE movq: %.2f ns per iteration; VEX vmovq: %.2f ns per iteration; ratio %.0f\n",
           best_legacy / n * 1e9, best_vex / n * 1e9, best_legacy / best_vex);
    return 0;
}
